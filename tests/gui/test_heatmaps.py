"""The window gives the Results page its model for heatmaps: none while a run trains (the
controls say why), the trained one afterwards, explained under the window's model lease."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QLabel
from test_main_window import LOAD_MS, TINY, load, open_folder

from headswap_gui.core import training


def test_results_heatmaps_wait_for_the_run_and_take_their_turn_on_the_model(qtbot, window, image_folder) -> None:
    load(qtbot, window, TINY)
    open_folder(qtbot, window, image_folder)
    panel = window.results_panel
    toggle = panel.findChild(QCheckBox, "heatmapCheckBox")
    note = panel.findChild(QLabel, "heatmapNoteLabel")
    assert toggle.isEnabled()
    config = training.TrainConfig(epochs=1, batch_size=2, image_size=32, device="cpu", val_fraction=0.34)
    with qtbot.waitSignal(window.resultsReady, timeout=LOAD_MS):
        assert window.start_training(config)
        assert not toggle.isEnabled() and "Training is using the model" in note.text()
    qtbot.waitUntil(lambda: not window.is_model_busy(), timeout=LOAD_MS)
    assert toggle.isEnabled() and note.text() == ""

    window.show_page("results")
    matrix = panel.confusion_matrix()
    row, col = next((r, c) for r in range(matrix.shape[0]) for c in range(matrix.shape[1]) if matrix[r, c])
    panel.select_cell(row, col)
    with qtbot.waitSignal(panel.heatmaps.heatmapsReady, timeout=LOAD_MS):
        toggle.setChecked(True)
    assert panel.heatmaps.count() == int(matrix[row, col])
    assert ("acquired", "explain") in window.model_lease.history()
    names = window.controller.loaded.class_names
    assert all(panel.heatmaps.label(path) in names for path in panel.selected_cell_images())
    qtbot.waitUntil(lambda: not panel.heatmaps.is_running() and not panel.thumbnails_loading(), timeout=LOAD_MS)
