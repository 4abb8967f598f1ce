"""ResultsPanel: confusion matrix, per-class metrics, cell selection, misclassified gallery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from headswap_gui.core.training import EvalResult
from headswap_gui.gui.results_panel import ResultsPanel

NAMES = ("cat", "dog", "fox")
#           0  1  2  3  4  5  6  7
TRUE = [0, 0, 0, 1, 1, 2, 2, 2]
PRED = [0, 1, 0, 1, 2, 2, 0, 2]
LOSS = [0.1, 2.5, 0.2, 0.3, 0.9, 0.05, 1.7, 0.4]


@pytest.fixture
def images(tmp_path) -> list[str]:
    paths = []
    for i in range(len(TRUE)):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (12, 10), (30 * i, 100, 200)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def panel(qtbot) -> ResultsPanel:
    widget = ResultsPanel()
    qtbot.addWidget(widget)
    widget.resize(900, 600)
    return widget


def _settle(qtbot, panel: ResultsPanel) -> None:
    qtbot.waitUntil(lambda: not panel.thumbnails_loading(), timeout=5000)


def _probabilities(pred: list[int], confidence: float = 0.8) -> np.ndarray:
    probs = np.full((len(pred), len(NAMES)), (1 - confidence) / (len(NAMES) - 1))
    probs[np.arange(len(pred)), pred] = confidence
    return probs


def test_confusion_matrix_and_metrics(qtbot, panel, images) -> None:
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    _settle(qtbot, panel)

    expected = np.array([[2, 1, 0], [0, 1, 1], [1, 0, 2]])
    np.testing.assert_array_equal(panel.confusion_matrix(), expected)
    assert panel.accuracy() == pytest.approx(5 / 8)
    rows = {name: (p, r, f1, n) for name, p, r, f1, n in panel.class_metrics()}
    assert rows["cat"][1] == pytest.approx(2 / 3)  # recall
    assert rows["cat"][0] == pytest.approx(2 / 3)  # precision: 2 of the 3 predicted cats
    assert rows["dog"][3] == 2
    table = panel.findChild(object, "classMetricsTable")
    assert table.model().rowCount() == 3
    assert "62.5%" in panel.findChild(object, "resultsSummaryLabel").text()


def test_selecting_a_cell_lists_its_images(qtbot, panel, images) -> None:
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    with qtbot.waitSignal(panel.cellSelected) as blocker:
        panel.select_cell(2, 0)  # fox predicted as cat
    assert blocker.args == [2, 0]
    assert panel.selected_cell_images() == [images[6]]
    panel.select_cell(0, 0)
    assert panel.selected_cell_images() == [images[0], images[2]]
    assert panel.findChild(object, "cellImagesList").count() == 2
    _settle(qtbot, panel)


def test_clicking_a_cell_selects_it(qtbot, panel, images) -> None:
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    panel.show()
    qtbot.waitExposed(panel)
    view = panel.findChild(object, "confusionMatrixView")
    with qtbot.waitSignal(panel.cellSelected):
        qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=view.cell_center(1, 2))
    assert panel.selected_cell() == (1, 2)
    assert panel.selected_cell_images() == [images[4]]
    # Keyboard: move left and press Enter -> (1, 1).
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Left)
    with qtbot.waitSignal(panel.cellSelected):
        qtbot.keyClick(view, Qt.Key.Key_Return)
    assert panel.selected_cell() == (1, 1)
    _settle(qtbot, panel)


def test_misclassified_gallery_is_sorted_by_loss(qtbot, panel, images) -> None:
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    assert panel.misclassified_count() == 3
    # Wrong ones: 1 (loss 2.5), 4 (0.9), 6 (1.7).
    assert panel.misclassified_images() == [images[1], images[6], images[4]]
    gallery = panel.findChild(object, "misclassifiedGallery")
    assert gallery.count() == 3
    assert "cat" in gallery.item(0).text() and "80%" in gallery.item(0).text()
    _settle(qtbot, panel)


def test_eval_result_and_derived_values(qtbot, panel, images) -> None:
    probs = _probabilities(PRED, 0.7).astype(np.float32)
    losses = -np.log(probs[np.arange(len(TRUE)), TRUE])
    result = EvalResult(
        np.array(TRUE, np.int64), np.array(PRED, np.int64), probs, losses.astype(np.float32)
    )
    panel.set_eval_result(result, NAMES, [Path(p) for p in images])
    np.testing.assert_array_equal(panel.confusion_matrix(), result.confusion())
    assert panel.misclassified_images() == [images[i] for i in result.misclassified()]
    # Without labels or losses they follow from the probabilities.
    panel.set_results(NAMES, images, TRUE, None, probs)
    np.testing.assert_array_equal(panel.confusion_matrix(), result.confusion())
    assert panel.misclassified_count() == 3
    _settle(qtbot, panel)


def test_clear(qtbot, panel, images) -> None:
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    panel.select_cell(0, 1)
    panel.clear()
    assert panel.confusion_matrix().shape == (0, 0)
    assert panel.misclassified_count() == 0
    assert panel.selected_cell_images() == []
    assert not panel.has_results()
    _settle(qtbot, panel)


def test_interactive_widgets_are_named(panel) -> None:
    for name in ("classMetricsTable", "confusionMatrixView", "cellImagesList", "misclassifiedGallery",
                 "resultsImageTabs"):
        widget = panel.findChild(object, name)
        assert widget is not None and widget.accessibleName(), name


def test_activating_a_misclassified_image_selects_its_cell(qtbot, panel, images) -> None:
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    gallery = panel.findChild(object, "misclassifiedGallery")
    with qtbot.waitSignal(panel.cellSelected) as blocker:
        gallery.itemActivated.emit(gallery.item(1))  # image 6: fox predicted as cat
    assert blocker.args == [2, 0]
    assert panel.selected_cell_images() == [images[6]]
    _settle(qtbot, panel)


def test_a_perfect_result_says_so_instead_of_an_empty_gallery(qtbot, panel, images) -> None:
    from PySide6.QtWidgets import QLabel

    panel.set_results(NAMES, images, TRUE, TRUE, _probabilities(TRUE), LOSS)
    assert panel.misclassified_count() == 0
    label = panel.findChild(QLabel, "allCorrectLabel")
    assert label.isVisibleTo(panel) and "classified correctly" in label.text()
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    assert not label.isVisibleTo(panel)


def test_activating_an_image_of_a_cell_asks_to_look_at_it(qtbot, panel, images) -> None:
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    panel.show()
    qtbot.waitExposed(panel)
    panel.select_cell(2, 0)
    cell_list = panel.findChild(object, "cellImagesList")
    qtbot.waitUntil(cell_list.isVisible, timeout=5000)
    cell_list.setCurrentRow(0)
    with qtbot.waitSignal(panel.imageActivated) as blocker:
        qtbot.keyClick(cell_list, Qt.Key.Key_Return)  # Enter, as a double-click, activates the item
    assert blocker.args == [images[6]]
    _settle(qtbot, panel)


# -- heatmaps ---------------------------------------------------------------------------------


@pytest.fixture
def tiny_model():
    """A real (tiny, random) CNN over the three classes: Grad-CAM runs on its feature map."""
    import torch
    from torch import nn

    from headswap_gui.core.preprocessing import Preprocessing
    from headswap_gui.core.sources import LoadedModel

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    return LoadedModel(model, "tiny", "tiny", Preprocessing(input_size=32, resize_size=36), NAMES)


@pytest.fixture
def shown_panel(qtbot, panel) -> ResultsPanel:
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def _icon(view, row: int):
    return view.item(row).icon().pixmap(64, 64).toImage()


def _wait_idle(qtbot, panel: ResultsPanel) -> None:
    qtbot.waitUntil(lambda: not panel.heatmaps.is_running() and not panel.thumbnails_loading(), timeout=10000)


def test_the_toggle_draws_heatmaps_over_the_gallery_and_the_selected_cell(qtbot, shown_panel, tiny_model,
                                                                          images) -> None:
    from PySide6.QtWidgets import QCheckBox

    panel = shown_panel
    panel.set_model(tiny_model)
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    _settle(qtbot, panel)
    gallery = panel.findChild(object, "misclassifiedGallery")
    plain = [_icon(gallery, row) for row in range(gallery.count())]
    assert panel.heatmaps.count() == 0

    with qtbot.waitSignal(panel.heatmaps.heatmapsReady, timeout=10000):
        qtbot.mouseClick(panel.findChild(QCheckBox, "heatmapCheckBox"), Qt.MouseButton.LeftButton)
    assert panel.heatmaps.count() == 3  # the three misclassified images on screen
    for row, path in enumerate(panel.misclassified_images()):
        assert panel.heatmaps.label(path) in NAMES  # drawn for the class the model predicts
        assert _icon(gallery, row) != plain[row]
        assert "Heatmap: where the model sees" in gallery.item(row).toolTip()

    cell_list = panel.findChild(object, "cellImagesList")
    with qtbot.waitSignal(panel.heatmaps.heatmapsReady, timeout=10000):
        panel.select_cell(0, 0)  # images 0 and 2: only they are explained now
    qtbot.waitUntil(lambda: panel.heatmaps.count() == 2, timeout=10000)
    assert all(panel.heatmaps.overlay(path) is not None for path in (images[0], images[2]))
    _settle(qtbot, panel)
    for row, path in enumerate(panel.selected_cell_images()):
        overlay = panel.heatmaps.overlay(path)
        assert cell_list.item(row).icon().pixmap(64, 64).toImage().pixel(32, 32) != 0  # drawn
        assert overlay is not None and "Heatmap" in cell_list.item(row).toolTip()

    panel.heatmaps.set_enabled(False)  # the plain thumbnails again
    panel.findChild(object, "resultsImageTabs").setCurrentIndex(0)
    assert [_icon(gallery, row) for row in range(gallery.count())] == plain
    _wait_idle(qtbot, panel)


def test_the_class_picker_changes_the_target_and_opacity_reblends_without_a_job(qtbot, shown_panel, tiny_model,
                                                                               images) -> None:
    from PySide6.QtWidgets import QComboBox

    from headswap_gui.gui.jobs import ModelLease

    panel = shown_panel
    panel.model_lease = ModelLease()
    panel.set_model(tiny_model)
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    with qtbot.waitSignal(panel.heatmaps.heatmapsReady, timeout=10000):
        panel.heatmaps.set_enabled(True)
    combo = panel.findChild(QComboBox, "heatmapClassComboBox")
    assert [combo.itemText(i) for i in range(combo.count())] == ["predicted class", *NAMES]

    with qtbot.waitSignal(panel.heatmaps.heatmapsReady, timeout=10000):
        combo.setCurrentIndex(combo.findData("dog"))  # as a user picks it
    assert panel.heatmaps.target() == "dog"
    assert {panel.heatmaps.label(path) for path in panel.misclassified_images()} == {"dog"}
    assert panel.model_lease.history().count(("acquired", "explain")) == 2  # one job per class

    gallery = panel.findChild(object, "misclassifiedGallery")
    _settle(qtbot, panel)
    before = _icon(gallery, 0)
    path = panel.misclassified_images()[0]
    half = panel.heatmaps.overlay(path)
    panel.heatmaps.set_opacity(0.0)  # re-blended at once from the kept maps: no new job
    assert not panel.heatmaps.is_running()
    assert panel.model_lease.history().count(("acquired", "explain")) == 2
    clear = panel.heatmaps.overlay(path)
    assert clear != half and _icon(gallery, 0) != before
    thumb = Image.open(path).convert("RGB")
    centre = clear.pixelColor(clear.width() // 2, clear.height() // 2)
    assert (centre.red(), centre.green(), centre.blue()) == thumb.getpixel((thumb.width // 2, thumb.height // 2))
    _wait_idle(qtbot, panel)


def test_the_toggle_is_disabled_with_a_reason_without_a_model_and_while_training(qtbot, shown_panel, tiny_model,
                                                                                images) -> None:
    from PySide6.QtWidgets import QCheckBox, QLabel

    panel = shown_panel
    toggle = panel.findChild(QCheckBox, "heatmapCheckBox")
    note = panel.findChild(QLabel, "heatmapNoteLabel")
    panel.set_results(NAMES, images, TRUE, PRED, _probabilities(PRED), LOSS)
    assert not toggle.isEnabled() and "Load a model" in note.text() and "Load a model" in toggle.toolTip()

    panel.set_model(tiny_model)
    assert toggle.isEnabled() and note.text() == ""
    with qtbot.waitSignal(panel.heatmaps.heatmapsReady, timeout=10000):
        toggle.setChecked(True)
    assert panel.heatmaps.count() == 3

    panel.set_model(tiny_model, training=True)  # the run's worker owns the model now
    assert not toggle.isEnabled() and "Training is using the model" in note.text()
    assert panel.heatmaps.count() == 0 and not panel.heatmaps.is_running()  # maps of the old weights are gone
    with qtbot.waitSignal(panel.heatmaps.heatmapsReady, timeout=10000):
        panel.set_model(tiny_model)  # the run ended: the maps of the trained model, toggle still on
    assert toggle.isEnabled() and panel.heatmaps.count() == 3

    import copy

    from headswap_gui.core.sources import LoadedModel

    empty = copy.deepcopy(tiny_model.model).to("meta")  # built without weights: cannot be explained
    panel.set_model(LoadedModel(empty, "tiny", "tiny", tiny_model.preprocessing, NAMES))
    assert not toggle.isEnabled() and "without weights" in note.text()
    _wait_idle(qtbot, panel)


def test_only_images_on_screen_are_explained_and_a_new_selection_stops_the_job(qtbot, tiny_model,
                                                                                tmp_path) -> None:
    from headswap_gui.gui.jobs import ModelLease

    paths = []
    for i in range(60):
        path = tmp_path / f"wrong{i:02d}.png"
        Image.new("RGB", (16, 16), (4 * i, 90, 200)).save(path)
        paths.append(str(path))
    true, pred = [0] * 59 + [1], [1] * 59 + [1]  # 59 cats taken for dogs, one dog
    panel = ResultsPanel()
    qtbot.addWidget(panel)
    panel.resize(700, 560)
    panel.show()
    qtbot.waitExposed(panel)
    panel.model_lease = ModelLease()
    panel.set_model(tiny_model)
    panel.set_results(NAMES, paths, true, pred, _probabilities(pred))
    with qtbot.waitSignal(panel.heatmaps.heatmapsReady, timeout=10000):
        panel.heatmaps.set_enabled(True)
    first = panel.heatmaps.count()
    assert 0 < first < 59  # a screenful of the gallery, not all of it
    gallery = panel.findChild(object, "misclassifiedGallery")
    with qtbot.waitSignal(panel.heatmaps.heatmapsReady, timeout=10000):
        gallery.verticalScrollBar().setValue(gallery.verticalScrollBar().maximum())
    assert panel.heatmaps.overlay(panel.misclassified_images()[-1]) is not None  # scrolled into view

    with panel.model_lease.held("test"):  # another job has the model: the next one waits for it
        panel.findChild(object, "resultsImageTabs").setCurrentIndex(0)
        gallery.verticalScrollBar().setValue(0)
        panel.heatmaps.set_target("fox")  # every map again, from the top of the gallery
        qtbot.waitUntil(panel.heatmaps.is_running, timeout=10000)
        with qtbot.waitSignal(panel.cellSelected):
            panel.select_cell(1, 1)  # another selection while it waits: it stops, untouched
    with qtbot.waitSignal(panel.heatmaps.heatmapsReady, timeout=10000):
        pass  # the job for the one image of the new cell
    assert panel.heatmaps.count() == 1 and panel.heatmaps.label(paths[-1]) == "fox"
    assert all(panel.heatmaps.label(path) is None for path in paths[:59])  # the stopped job explained none
    _wait_idle(qtbot, panel)
