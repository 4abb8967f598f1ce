"""The main window with real widgets and real models: loading, the head, undo, drops,
training state, closing, settings and start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QFont, QKeySequence
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox, QPushButton

from headswap_gui.core import training
from headswap_gui.core.heads import HeadSpec
from headswap_gui.core.runs import save_model_folder
from headswap_gui.core.sources import STATE_DICT_SUFFIXES, load_model, swap_head
from headswap_gui.gui import drops
from headswap_gui.gui.head_dialog import HeadChoice, HeadDialog
from headswap_gui.gui.main_window import MainWindow
from headswap_gui.gui.prompts import ArchitecturePrompt, StopTrainingQuestion
from headswap_gui.gui.settings import AppSettings
from headswap_gui.gui.worker import running_runners

TINY = "timm:test_efficientnet"  # 356 k parameters, builds in milliseconds
LOAD_MS = 60_000


# -- fixtures ------------------------------------------------------------------------------------


def load(qtbot, win: MainWindow, source: str) -> None:
    with qtbot.waitSignal(win.modelLoaded, timeout=LOAD_MS):
        assert win.load_model(source)
    qtbot.waitUntil(lambda: not win.is_loading(), timeout=5000)


def open_folder(qtbot, win: MainWindow, folder: Path) -> None:
    with qtbot.waitSignal(win.data_panel.datasetChanged, timeout=LOAD_MS):
        win.open_data_folder(str(folder))


def drop(target, paths: list[Path]) -> tuple[bool, bool]:
    """Send a drag-enter then a drop of ``paths`` onto ``target``, as a file manager would."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    centre = target.rect().center()
    enter = QDragEnterEvent(
        centre, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(target, enter)
    event = QDropEvent(
        QPointF(centre), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(target, event)
    return enter.isAccepted(), event.isAccepted()


def long_run() -> training.TrainConfig:
    """A real run that would take minutes: tests stop it once it is under way."""
    return training.TrainConfig(
        epochs=500, batch_size=2, image_size=32, device="cpu", freeze="full", cache_features="off", lr=1e-4
    )


def wait_until_training_steps(qtbot, win: MainWindow) -> None:
    qtbot.waitUntil(lambda: win.plots_view.step_count() > 0, timeout=LOAD_MS)


# -- the model and its head ----------------------------------------------------------------------


def test_demo_head_is_highlighted_selected_and_visible(qtbot, window: MainWindow) -> None:
    load(qtbot, window, "demo")
    panel = window.model_panel
    head = window.controller.main_head()
    assert head is not None and head.path == "classifier"
    index = panel.proxy_index_for_path("classifier")
    assert index.isValid()
    font = index.data(Qt.ItemDataRole.FontRole)
    assert isinstance(font, QFont) and font.bold()
    assert index.data(Qt.ItemDataRole.BackgroundRole) is not None
    assert panel.tree_view.currentIndex() == index
    assert panel.tree_view.selectionModel().isRowSelected(index.row(), index.parent())
    qtbot.waitUntil(
        lambda: panel.tree_view.visualRect(index).intersects(panel.tree_view.viewport().rect()), timeout=2000
    )
    assert panel.tree_view.uniformRowHeights()
    assert panel.detail_labels["path"].text() == "classifier"
    assert "main head" in panel.detail_labels["head"].text()
    assert "mean" in panel.compute_statistics() and "std" in panel.detail_labels["stats"].text()
    assert window.status_model_label.text() == "demo"
    assert "M parameters" in window.status_params_label.text()
    assert window.windowTitle().endswith("demo")
    assert window.settings.recent_models()[0] == "demo"


def test_structure_only_layers_say_not_loaded(qtbot, window: MainWindow) -> None:
    load(qtbot, window, "torchvision:squeezenet1_1")  # structure and random init, no download
    assert window.controller.main_head().path == "classifier.1"
    window.controller.loaded.model.to("meta")
    window.model_panel.select_layer("classifier.1")
    assert "not loaded" in window.model_panel.compute_statistics()


def test_filter_box_filters_the_tree(qtbot, window: MainWindow) -> None:
    load(qtbot, window, TINY)
    panel = window.model_panel
    panel.filter_edit.setText("conv_head")
    assert panel.proxy_index_for_path("conv_head").isValid()
    assert not panel.proxy_index_for_path("classifier").isValid()
    panel.filter_edit.setText("")
    assert panel.proxy_index_for_path("classifier").isValid()


def test_head_dialog_swap_then_undo_and_redo(qtbot, window: MainWindow, image_folder: Path, monkeypatch) -> None:
    load(qtbot, window, TINY)
    open_folder(qtbot, window, image_folder)
    model = window.controller.loaded.model
    old_head = model.get_submodule("classifier")
    old_weight = old_head.weight.detach().clone()
    seen: dict[str, object] = {}

    def fake_ask(cls, parent, *, heads, old_modules=None, num_classes=2, class_names=None, spec=None, dataset_note=""):
        seen.update(num_classes=num_classes, class_names=tuple(class_names or ()), old=old_modules)
        return HeadChoice(HeadSpec("mlp", (32,), "relu", 0.1), num_classes, tuple(class_names))

    monkeypatch.setattr(HeadDialog, "ask", classmethod(fake_ask))
    assert window.replace_head_action.isEnabled()
    window.replace_head_action.trigger()
    assert seen["num_classes"] == 2 and seen["class_names"] == ("cats", "dogs")  # pre-filled from the data
    assert seen["old"]["classifier"] is old_head
    new_head = model.get_submodule("classifier")
    assert isinstance(new_head, torch.nn.Sequential)
    record = window.model_panel.tree_model.root_record().find("classifier")
    assert record.type_name == "Sequential" and record.head_role == "main"
    assert [c.type_name for c in record.children] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert window.model_panel.selected_path() == "classifier"
    assert window.controller.loaded.class_names == ("cats", "dogs")

    # Undo restores the very same module with the same weights.
    assert window.undo_action.isEnabled()
    assert window.undo_action.shortcut() == QKeySequence(QKeySequence.StandardKey.Undo)
    assert window.redo_action.shortcut() == QKeySequence("Ctrl+Shift+Z")
    window.activateWindow()
    qtbot.waitActive(window)
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # Ctrl+Z
    assert model.get_submodule("classifier") is old_head
    assert torch.equal(old_head.weight, old_weight)
    assert window.model_panel.tree_model.root_record().find("classifier").type_name == "Linear"
    assert window.controller.num_classes() == 1000

    qtbot.keyClick(
        window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )  # Ctrl+Shift+Z
    assert model.get_submodule("classifier") is new_head
    assert window.controller.num_classes() == 2
    assert HeadSpec.from_dict(window.settings.last_head_design()).design == "mlp"


def test_use_as_head_from_the_tree_is_undoable(qtbot, window: MainWindow) -> None:
    load(qtbot, window, TINY)
    panel = window.model_panel
    assert panel.select_layer("conv_head")
    panel.use_as_head_action.trigger()
    assert [h.path for h in window.controller.heads] == ["conv_head"]
    assert panel.tree_model.root_record().find("conv_head").head_role == "main"
    window.undo_action.trigger()
    assert [h.path for h in window.controller.heads] == ["classifier"]
    # A layer without weights cannot be a head: the error is shown, the window lives on.
    panel.select_layer("global_pool")
    panel.use_as_head_action.trigger()
    assert "cannot be used as a classifier head" in window.last_error
    assert [h.path for h in window.controller.heads] == ["classifier"]


def test_core_errors_show_a_message_without_traceback(qtbot, window: MainWindow) -> None:
    with qtbot.waitSignal(window.modelLoadFailed, timeout=LOAD_MS):
        window.load_model("timm:no_such_model_anywhere")
    assert "timm has no architecture" in window.last_error and "Traceback" not in window.last_error
    boxes = [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    assert boxes and "no_such_model_anywhere" in boxes[0].text()
    assert window.isVisible()


def test_a_failed_load_says_which_model_is_still_loaded_until_the_next_one(qtbot, window: MainWindow) -> None:
    load(qtbot, window, TINY)
    with qtbot.waitSignal(window.modelLoadFailed, timeout=LOAD_MS):
        window.load_model("timm:no_such_model_anywhere")
    qtbot.waitUntil(lambda: not window.is_loading(), timeout=5000)
    status = window.model_panel.status_label.text()
    assert "Could not load timm:no_such_model_anywhere" in status and f"{TINY} is still loaded" in status
    assert "Could not load" in window.statusBar().currentMessage()  # not "Loaded …" from before
    for box in window.findChildren(QMessageBox):
        box.close()
    load(qtbot, window, "demo")
    assert "Could not load" not in window.model_panel.status_label.text()


# -- drops ---------------------------------------------------------------------------------------


def test_folder_dropped_on_the_window_opens_it_as_data(qtbot, window: MainWindow, image_folder: Path) -> None:
    with qtbot.waitSignal(window.data_panel.datasetChanged, timeout=LOAD_MS):
        accepted = drop(window.model_panel.tree_view.viewport(), [image_folder])  # "anywhere"
    assert accepted == (True, True)
    assert window.data_panel.class_count_items() == {"cats": 3, "dogs": 3}
    assert window.tabs.currentIndex() == 0
    assert window.settings.recent_folders()[0] == str(image_folder)


def test_model_folder_and_file_drops_load_the_model(qtbot, window: MainWindow, tmp_path: Path) -> None:
    loaded = load_model(TINY)
    swap_head(loaded, 3, HeadSpec(), class_names=("a", "b", "c"))
    folder = save_model_folder(tmp_path / "saved-model", loaded)
    with qtbot.waitSignal(window.modelLoaded, timeout=LOAD_MS):
        drop(window.data_panel, [folder])  # the Data page takes folders, but not model folders
    assert window.controller.num_classes() == 3
    assert window.controller.loaded.class_names == ("a", "b", "c")
    qtbot.waitUntil(lambda: not window.is_loading(), timeout=5000)
    with qtbot.waitSignal(window.modelLoaded, timeout=LOAD_MS):
        drop(window, [folder / "model.safetensors"])
    assert window.controller.loaded.source == str(folder)
    assert drops.MODEL_FILE_SUFFIXES == STATE_DICT_SUFFIXES


def test_bare_weights_file_asks_for_the_architecture(qtbot, window: MainWindow, tmp_path: Path, monkeypatch) -> None:
    from safetensors.torch import save_file

    loaded = load_model(TINY)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in loaded.model.state_dict().items()}, str(path))
    asked: list[str] = []
    monkeypatch.setattr(
        ArchitecturePrompt, "ask",
        classmethod(lambda cls, parent, p, choices: asked.append(p) or TINY),
    )
    with qtbot.waitSignal(window.modelLoaded, timeout=LOAD_MS):
        drop(window, [path])
    assert asked == [str(path)]
    assert window.controller.loaded.weights == "weights.safetensors"


def test_image_drop_goes_to_the_try_page(qtbot, window: MainWindow, image_folder: Path) -> None:
    load(qtbot, window, TINY)
    images = sorted((image_folder / "cats").glob("*.png"))[:2]
    assert drop(window.model_panel, images) == (True, True)
    assert window.tabs.currentWidget() is window.try_panel
    assert window.try_panel.image_paths() == [str(p) for p in images]
    qtbot.waitUntil(lambda: window.try_panel.prediction_count() == 2, timeout=LOAD_MS)
    assert drops.classify_paths([str(image_folder / "cats" / "notes.txt")]) == ""
    # A folder of loose images is something to try; a folder of class folders is training data.
    assert drops.classify_paths([str(image_folder / "dogs")]) == "images"
    assert drops.classify_paths([str(image_folder)]) == "data"
    window.tabs.setCurrentIndex(0)
    drop(window.data_panel, [image_folder / "dogs"])
    assert window.tabs.currentWidget() is window.try_panel
    qtbot.waitUntil(lambda: window.try_panel.prediction_count() == 5, timeout=LOAD_MS)


# -- training ------------------------------------------------------------------------------------


def editing_actions_enabled(win: MainWindow) -> list[bool]:
    return [
        win.open_model_action.isEnabled(),
        win.replace_head_action.isEnabled(),
        win.undo_action.isEnabled(),
        win.redo_action.isEnabled(),
        win.model_panel.load_button.isEnabled(),
        win.model_panel.use_as_head_action.isEnabled(),
        win.start_action.isEnabled(),
    ]


def test_training_swaps_the_head_undoably_and_locks_editing(
    qtbot, window: MainWindow, image_folder: Path, monkeypatch
) -> None:
    load(qtbot, window, TINY)
    open_folder(qtbot, window, image_folder)
    old_head = window.controller.loaded.model.get_submodule("classifier")
    with qtbot.waitSignal(window.trainingStarted, timeout=5000):
        assert window.start_training(long_run())
    # The 1000-class head did not fit 2 classes: replaced with a Linear head, undoably.
    assert window.controller.num_classes() == 2
    assert window.undo_stack.count() == 1 and "Linear" in window.undo_stack.undoText()
    assert "Undo" in window.statusBar().currentMessage() or "Linear" in window.statusBar().currentMessage()
    wait_until_training_steps(qtbot, window)
    qtbot.waitUntil(lambda: window.training_panel.status_text() != "", timeout=5000)
    assert window.is_training()
    assert not any(editing_actions_enabled(window))
    assert window.stop_action.isEnabled()
    window.undo_action.trigger()  # a disabled action does nothing, a direct call is refused too
    window._on_undo_action_triggered()
    assert window.controller.loaded.model.get_submodule("classifier") is not old_head

    with qtbot.waitSignal(window.trainingFinished, timeout=1000) as finished:  # Stop acts within a step
        window.stop_action.trigger()
    assert finished.args[0].reason == "stopped"
    assert not window.is_training()
    qtbot.waitUntil(lambda: not window.is_model_busy(), timeout=LOAD_MS)  # evaluating the best epoch
    assert window.open_model_action.isEnabled() and window.replace_head_action.isEnabled()
    assert window.undo_action.isEnabled() and window.start_action.isEnabled()
    assert window.settings.last_hyperparameters()["batch_size"] == 2
    window.undo_action.trigger()
    assert window.controller.loaded.model.get_submodule("classifier") is old_head


def test_close_during_training_asks_then_stops_cleanly(qtbot, window: MainWindow, image_folder: Path, monkeypatch) -> None:
    load(qtbot, window, TINY)
    open_folder(qtbot, window, image_folder)
    assert window.start_training(long_run())
    wait_until_training_steps(qtbot, window)

    answers: list[bool] = []
    monkeypatch.setattr(StopTrainingQuestion, "ask", classmethod(lambda cls, parent: answers.append(False) or False))
    assert not window.close()  # "No": keep training
    assert window.isVisible() and window.is_training()

    monkeypatch.setattr(StopTrainingQuestion, "ask", classmethod(lambda cls, parent: answers.append(True) or True))
    assert window.close()
    assert answers == [False, True]
    assert not window.is_training()
    assert not running_runners()  # stopped and waited for: no thread outlives the window


def test_short_real_training_run_fills_the_results(qtbot, window: MainWindow, image_folder: Path, tmp_path: Path) -> None:
    load(qtbot, window, TINY)
    open_folder(qtbot, window, image_folder)
    config = training.TrainConfig(epochs=2, batch_size=2, image_size=32, device="cpu", val_fraction=0.34, warmup_epochs=0)
    with qtbot.waitSignal(window.resultsReady, timeout=LOAD_MS) as blocker:
        with qtbot.waitSignal(window.trainingFinished, timeout=LOAD_MS) as finished:
            assert window.start_training(config)
    assert finished.args[0].reason == "completed"
    assert window.plots_view.epoch_count() == 2
    assert window.training_panel.progress_value() == 100
    assert window.results_panel.has_results()
    assert len(blocker.args[0].paths) == 2  # one validation image per class
    run_dir = Path(finished.args[0].run_dir)
    committed = json.loads((run_dir / "headswap.json").read_text())
    assert run_dir.parent == tmp_path / "runs" and (run_dir / committed["weights_file"]).is_file()
    assert finished.args[0].saved_epochs == 2
    qtbot.waitUntil(lambda: not window.is_model_busy(), timeout=10_000)
    copy = window.save_run_as(str(tmp_path / "my-run"))
    assert copy and (Path(copy) / "headswap.json").is_file()
    assert window.controller.loaded.preprocessing.input_size == 32  # the size it was trained at
    assert window.export_action.isEnabled()
    assert window.export_model(("torchscript", str(tmp_path / "m.pt")))
    qtbot.waitUntil(lambda: not window.jobs.runners()["export"].is_running(), timeout=LOAD_MS)
    assert window.last_export is not None and window.last_export.max_abs_logit_difference < 1e-3
    assert window.last_export.sample_source == "given images"  # the validation images
    assert window.model_panel.tree_model.root_record().find("conv_stem").trainable_params == 0  # frozen shows


# -- demo, settings, start-up --------------------------------------------------------------------


def test_demo_opens_model_data_and_settings(qtbot, window: MainWindow) -> None:
    with qtbot.waitSignals([window.modelLoaded, window.demoDataReady], timeout=LOAD_MS):
        window.start_up(demo=True)
    assert window.controller.loaded.source == "demo"
    assert len(window.dataset().class_names) == 10
    config = window.training_panel.config()
    assert (config.epochs, config.image_size, config.freeze) == (5, 64, "head")
    assert window.start_action.isEnabled()
    qtbot.waitUntil(lambda: window.model_panel.zoo_count() > 1000, timeout=LOAD_MS)
    panel = window.model_panel
    panel.search_edit.setText("resnet50")
    assert panel.zoo_proxy.rowCount() >= 2
    # Search, then Enter loads the current match (random weights: nothing to download).
    panel.set_weights_choice("random")
    panel.search_edit.setText("test_efficientnet")
    assert panel.selected_source() == TINY
    with qtbot.waitSignal(window.modelLoaded, timeout=LOAD_MS):
        qtbot.keyClick(panel.search_edit, Qt.Key.Key_Return)
    assert window.controller.loaded.source == TINY


def test_weights_choice_decides_the_source_and_download(qtbot, window: MainWindow, monkeypatch) -> None:
    requests: list[tuple[str, bool]] = []
    monkeypatch.setattr(window, "load_model", lambda source, download=False, **kw: requests.append((source, download)))
    panel = window.model_panel
    panel.zoo_model.setStringList(["demo", "timm:resnet18", "torchvision:resnet18"])
    for choice, expected in (
        ("download", ("torchvision:resnet18@DEFAULT", True)),
        ("pretrained", ("torchvision:resnet18@DEFAULT", False)),
        ("random", ("torchvision:resnet18", False)),
    ):
        panel.set_weights_choice(choice)
        assert panel.select_source("torchvision:resnet18")
        panel.load_button.click()
        assert requests[-1] == expected
    panel.set_weights_choice("download")
    panel.select_source("timm:resnet18")
    panel.load_button.click()
    assert requests[-1] == ("timm:resnet18@pretrained", True)


def test_layout_and_recents_persist(qtbot, isolated_settings, tmp_path) -> None:
    first = MainWindow(settings=AppSettings(), runs_root=tmp_path / "runs")
    qtbot.addWidget(first)
    first.show()
    load(qtbot, first, TINY)
    first.resize(760, 590)  # the offscreen screen is 800×800; restoreGeometry clamps to it
    first.main_splitter.setSizes([300, 440])
    sizes, size = first.main_splitter.sizes(), first.size()
    assert size.height() == 590
    first.tabs.setCurrentIndex(2)
    first.close()
    second = MainWindow(settings=AppSettings(), runs_root=tmp_path / "runs")
    qtbot.addWidget(second)
    assert second.size() == size
    second.show()
    qtbot.waitExposed(second)
    assert second.main_splitter.sizes()[0] == sizes[0]
    assert second.tabs.currentIndex() == 2
    assert second.settings.recent_models() == [TINY]
    assert [a.text() for a in second.recent_menu.actions() if a.data()] == [TINY]
    second.close()


def test_interactive_widgets_are_named(qtbot, window: MainWindow) -> None:
    from PySide6.QtWidgets import QAbstractButton, QComboBox, QLineEdit, QTreeView

    panel = window.model_panel
    widgets = [w for kind in (QAbstractButton, QComboBox, QLineEdit, QTreeView) for w in panel.findChildren(kind)]
    assert len(widgets) >= 8
    for widget in widgets:
        if widget.parent() is panel.search_edit or widget.parent() is panel.filter_edit:
            continue  # the line edits' own clear buttons
        if isinstance(widget, QLineEdit) and isinstance(widget.parent(), QComboBox):
            continue
        assert widget.objectName(), widget
        assert widget.accessibleName(), widget.objectName()
    for action in (window.open_model_action, window.replace_head_action, window.start_action, window.stop_action):
        assert action.objectName()


def test_window_paints_before_heavy_imports() -> None:
    """``headswap-gui`` shows its window without importing torch, timm or pyqtgraph first."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HEADSWAP_GUI_EXIT_AFTER_PAINT": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "headswap_gui.app"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["visible"] and report["heavy_modules"] == []
    assert report["first_paint_s"] < 1.5


def test_deferred_start_builds_the_pages_after_the_first_paint(qtbot, isolated_settings, tmp_path, image_folder) -> None:
    win = MainWindow(settings=AppSettings(), runs_root=tmp_path / "runs", defer_panels=True)
    qtbot.addWidget(win)
    win.show()
    assert win.data_panel is None and win.tabs.count() == len(win.page_actions)  # placeholders until start_up
    with qtbot.waitSignals([win.panelsReady, win.modelLoaded], timeout=LOAD_MS, order="none"):
        win.start_up(model=TINY, data=str(image_folder))
    assert win.tabs.widget(0) is win.data_panel and win.training_panel is not None
    qtbot.waitUntil(lambda: win.dataset() is not None, timeout=LOAD_MS)
    assert win.controller.loaded.source == TINY
    qtbot.waitUntil(lambda: win.model_panel.zoo_count() > 1000, timeout=LOAD_MS)
    win.shutdown()


def test_the_data_page_offers_to_train_once_a_model_is_loaded(qtbot, window: MainWindow, image_folder: Path) -> None:
    open_folder(qtbot, window, image_folder)
    button = window.data_panel.findChild(QPushButton, "trainOnDataButton")
    assert not button.isEnabled()
    assert "Load a model" in window.data_panel.findChild(QLabel, "dataNextLabel").text()
    load(qtbot, window, TINY)
    assert button.isEnabled()
    window.apply_training_settings(long_run().to_dict())
    with qtbot.waitSignal(window.trainingStarted, timeout=LOAD_MS):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.tabs.currentWidget() is window.train_page, timeout=5000)  # the next turn
    assert not button.isEnabled()  # one run at a time
    with qtbot.waitSignal(window.trainingFinished, timeout=LOAD_MS):
        window.stop_training()
    qtbot.waitUntil(lambda: not window.is_model_busy(), timeout=LOAD_MS)
