"""At 1024×768 every page keeps its buttons inside the window and every plot readable, with
a real model, real images and a real training run; the model pane folds away; Help lists the
window's shortcuts from its actions."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtWidgets import QAbstractButton, QApplication, QMessageBox

from headswap_gui.core import training
from headswap_gui.gui.main_window import MainWindow

TINY = "timm:test_efficientnet"
LOAD_MS = 60_000
SMALL = (1024, 768)
PLOT_MIN_PX = 120
PAGES = ("data", "train", "results", "labels", "map", "try", "runs")


def _loaded_with_data(qtbot, window: MainWindow, folder: Path) -> None:
    with qtbot.waitSignal(window.modelLoaded, timeout=LOAD_MS):
        assert window.load_model(TINY)
    qtbot.waitUntil(lambda: not window.is_loading(), timeout=5000)
    with qtbot.waitSignal(window.data_panel.datasetChanged, timeout=LOAD_MS):
        window.open_data_folder(str(folder))


def _buttons_outside(window: MainWindow) -> list[str]:
    """The visible buttons of the window (both panes, the current page) that are not wholly
    inside it: a button the user cannot reach without resizing."""
    inside = QRect(QPoint(0, 0), window.size())
    outside = []
    for button in window.findChildren(QAbstractButton):
        if not button.isVisibleTo(window) or not button.isVisible() or button.window() is not window:
            continue
        if button.parent() is not None and type(button.parent()).__name__ == "QTabBar":
            continue  # the tab bar's own scroll arrows
        corner = button.mapTo(window, QPoint(0, 0))
        if not inside.contains(QRect(corner, button.size())):
            outside.append(f"{button.objectName() or button.text()!r} at {corner.x()},{corner.y()} {button.width()}×{button.height()}")
    return outside


def _plot_heights(window: MainWindow) -> list[int]:
    view = window.plots_view
    return [round(p.getViewBox().sceneBoundingRect().height()) for p in view.plot_items()]


def _plots_outside(window: MainWindow) -> list[str]:
    """Plots whose right edge lies past the plots view: a legend's width pushed them out."""
    view = window.plots_view
    width = view._graphics.viewport().width()
    return [f"plot {i} ends at {p.sceneBoundingRect().right():.0f} of {width}"
            for i, p in enumerate(view.plot_items()) if p.sceneBoundingRect().right() > width + 1]


def _at_small_size(qtbot, window: MainWindow) -> None:
    window.resize(*SMALL)
    qtbot.waitUntil(lambda: window.size().toTuple() == SMALL, timeout=5000)


def test_every_page_keeps_its_buttons_inside_a_1024x768_window(qtbot, window, image_folder) -> None:
    _loaded_with_data(qtbot, window, image_folder)
    _at_small_size(qtbot, window)
    for page in PAGES:
        window.show_page(page)
        qtbot.waitUntil(lambda: window.tabs.currentWidget().isVisible(), timeout=5000)
        QApplication.processEvents()  # queued layout requests run before geometry is read
        assert _buttons_outside(window) == [], page


def test_plots_stay_readable_at_1024x768_before_and_during_a_run(qtbot, window, image_folder) -> None:
    _loaded_with_data(qtbot, window, image_folder)
    _at_small_size(qtbot, window)
    window.show_page("train")
    panel = window.training_panel
    qtbot.waitUntil(panel.isVisible, timeout=5000)
    assert panel.settings_expanded()  # a first-time user sees the settings…
    qtbot.waitUntil(lambda: min(_plot_heights(window)) >= PLOT_MIN_PX, timeout=5000)  # …and the plots

    config = training.TrainConfig(
        epochs=500, batch_size=2, image_size=32, device="cpu", freeze="full", cache_features="off", lr=1e-4
    )
    with qtbot.waitSignal(window.trainingStarted, timeout=5000):
        assert window.start_training(config)
    qtbot.waitUntil(lambda: window.plots_view.step_count() > 0, timeout=LOAD_MS)
    assert not panel.settings_expanded()  # folded away for the run, summarised in one line
    assert "500 epochs" in panel.settings_summary() and "batch 2" in panel.settings_summary()
    qtbot.waitUntil(lambda: min(_plot_heights(window)) >= PLOT_MIN_PX, timeout=5000)
    assert _buttons_outside(window) == []  # Stop included
    assert _plots_outside(window) == []
    with qtbot.waitSignal(window.trainingFinished, timeout=5000):
        window.stop_training()
    assert not panel.settings_expanded()  # the finished run's curves keep the room
    panel.set_settings_expanded(True)
    qtbot.waitUntil(lambda: min(_plot_heights(window)) >= PLOT_MIN_PX, timeout=5000)
    qtbot.waitUntil(lambda: not window.is_model_busy(), timeout=LOAD_MS)


def test_a_run_fits_a_1280x720_screen_without_scrolling(qtbot, window, image_folder) -> None:
    """The window a 1280×720 screen opens (92 % of it): the run's readout and both rows of
    plots fit, finished message included; the plots do not scroll."""
    _loaded_with_data(qtbot, window, image_folder)
    window.resize(1178, 662)
    qtbot.waitUntil(lambda: window.size().toTuple() == (1178, 662), timeout=5000)
    config = training.TrainConfig(epochs=1, batch_size=2, image_size=32, device="cpu", freeze="full", cache_features="off")
    with qtbot.waitSignal(window.trainingFinished, timeout=LOAD_MS):
        assert window.start_training(config)
    QApplication.processEvents()  # queued layout requests run before geometry is read
    area = window.plots_view.parentWidget().parentWidget()
    assert area.viewport().height() >= window.plots_view.minimumSizeHint().height()
    assert not area.verticalScrollBar().isVisible()
    assert min(_plot_heights(window)) >= PLOT_MIN_PX
    qtbot.waitUntil(lambda: not window.is_model_busy(), timeout=LOAD_MS)


def test_the_model_pane_folds_away_and_comes_back(qtbot, window) -> None:
    _at_small_size(qtbot, window)
    assert window.model_pane_visible() and window.model_pane_action.isChecked()
    narrow = window.tabs.width()
    window.model_pane_action.trigger()
    qtbot.waitUntil(lambda: window.tabs.width() > narrow + 200, timeout=5000)
    assert not window.model_pane_visible() and not window.model_pane_action.isChecked()
    window.model_pane_action.trigger()
    qtbot.waitUntil(lambda: window.model_pane_visible() and window.tabs.width() == narrow, timeout=5000)
    assert window.model_pane_action.isChecked()
    window.main_splitter.moveSplitter(0, 1)  # dragged shut by hand: the menu follows
    qtbot.waitUntil(lambda: not window.model_pane_action.isChecked(), timeout=5000)


def test_keyboard_shortcuts_are_listed_from_the_actions(qtbot, window) -> None:
    window.start_action.setShortcut("Ctrl+Alt+T")  # the list follows the actions, it is not a copy
    dialog = window.show_shortcuts()
    qtbot.waitExposed(dialog)
    rows = dict(dialog.rows())
    assert rows["Start training"] == "Ctrl+Alt+T"
    assert rows["Model pane"] == "Ctrl+B"
    assert rows["Train page"] == "Ctrl+2"
    assert "Keyboard shortcuts" in rows and "Replace head" in rows
    dialog.close()
    window.show_page("data")
    qtbot.keyClick(window, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    assert window.tabs.currentWidget() is window.results_panel


def test_an_export_says_where_it_went(qtbot, window, image_folder, tmp_path) -> None:
    _loaded_with_data(qtbot, window, image_folder)
    target = tmp_path / "exported.pt"
    assert window.export_model(("torchscript", str(target)))
    qtbot.waitUntil(lambda: window.findChild(QMessageBox, "exportDoneBox") is not None, timeout=LOAD_MS)
    box = window.findChild(QMessageBox, "exportDoneBox")
    assert str(target) in box.text() and "same class scores as PyTorch" in box.text()
    assert any(b.text() == "Show in folder" for b in box.buttons())
    box.close()
