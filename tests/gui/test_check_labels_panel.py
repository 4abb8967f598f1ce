"""The Check labels page: a real check under the window's model lease, changes queued on the
window's undo stack, applied to real files only after the confirmation, undone, rescanned."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QMenu, QPushButton

from headswap_gui.core.data import EXCLUDE_FILE, scan_image_folder
from headswap_gui.gui.check_labels_panel import ApplyLabelEditsDialog, CheckLabelsPanel
from headswap_gui.gui.main_window import MainWindow

TINY = "timm:test_efficientnet"
LOAD_MS = 60_000


def _checked(qtbot, window: MainWindow, folder: Path) -> CheckLabelsPanel:
    with qtbot.waitSignal(window.modelLoaded, timeout=LOAD_MS):
        assert window.load_model(TINY)
    qtbot.waitUntil(lambda: not window.is_loading(), timeout=5000)
    with qtbot.waitSignal(window.data_panel.datasetChanged, timeout=LOAD_MS):
        window.open_data_folder(str(folder))
    window.show_page("labels")
    panel = window.labels_panel
    assert window.tabs.currentWidget() is panel
    button = panel.findChild(QPushButton, "checkLabelsButton")
    assert button.isEnabled()
    with qtbot.waitSignal(panel.checkFinished, timeout=LOAD_MS) as finished:
        button.click()
    assert finished.args[0] is not None and finished.args[0].reason == "completed", panel.status_text()
    assert ("check labels", "acquired") in [(job, what) for what, job in window.model_lease.history()]
    panel.set_show_mode("all")
    assert len(panel.shown_issues()) == 6  # every image of the folder, ranked
    return panel


def _answer(monkeypatch, answer: bool) -> list:
    asked = []

    def ask(cls, parent, plan):
        asked.append([plan.describe(edit) for edit in plan.edits])
        return answer

    monkeypatch.setattr(ApplyLabelEditsDialog, "ask", classmethod(ask))
    return asked


def test_a_relabel_moves_the_file_only_after_confirmation_and_undo_restores_it(
        qtbot, window, image_folder, monkeypatch):
    panel = _checked(qtbot, window, image_folder)
    cat = image_folder / "cats" / "cats_0.png"
    panel.select_paths([str(cat)])
    menu = panel.findChild(QMenu, "moveToClassMenu")
    menu.aboutToShow.emit()
    assert [action.data() for action in menu.actions() if action.data()] == ["dogs"]  # not its own class
    menu.actions()[0].trigger()
    assert panel.pending_lines() == ["cats/cats_0.png → dogs"]
    assert window.undo_stack.undoText() == "Move 1 image to dogs"
    assert cat.exists()  # queued, not done

    apply_button = panel.findChild(QPushButton, "applyChangesButton")
    assert apply_button.text() == "Apply 1 change…"
    asked = _answer(monkeypatch, False)
    apply_button.click()
    assert asked == [["cats/cats_0.png → dogs"]]
    assert cat.exists() and panel.pending_count() == 1  # cancelled: nothing happened

    _answer(monkeypatch, True)
    with qtbot.waitSignal(window.data_panel.datasetChanged, timeout=LOAD_MS):
        apply_button.click()  # applied, then the Data page scans the folder again
    assert not cat.exists() and (image_folder / "dogs" / "cats_0.png").exists()
    labels = {Path(s.path).name: window.dataset().class_names[s.label] for s in window.dataset().samples}
    assert labels["cats_0.png"] == "dogs"
    assert panel.pending_count() == 0 and "Moved 1 image to another class" in panel.result_text()
    assert panel.state_text(str(cat)) == "moved to dogs"
    assert window.tabs.currentWidget() is panel  # the page stays in front
    assert panel.retrain_offered()

    assert window.undo_action.isEnabled()
    with qtbot.waitSignal(window.data_panel.datasetChanged, timeout=LOAD_MS):
        window.undo_action.trigger()
    assert cat.exists() and not (image_folder / "dogs" / "cats_0.png").exists()
    assert "Moved 1 image back" in panel.result_text()
    assert panel.pending_lines() == ["cats/cats_0.png → dogs"]  # pending again, as before Apply
    window.undo_action.trigger()
    assert panel.pending_count() == 0 and cat.exists()

    with qtbot.waitSignal(window.trainingStarted, timeout=LOAD_MS):
        panel.findChild(QPushButton, "retrainButton").click()  # one click: a run with the Train page's settings
    with qtbot.waitSignal(window.trainingFinished, timeout=LOAD_MS):
        window.stop_training()
    qtbot.waitUntil(lambda: not window.is_model_busy(), timeout=LOAD_MS)


def test_an_exclusion_is_honoured_by_the_next_scan(qtbot, window, image_folder, monkeypatch):
    panel = _checked(qtbot, window, image_folder)
    dog = image_folder / "dogs" / "dogs_1.png"
    panel.select_paths([str(dog)])
    panel.findChild(QPushButton, "excludeImagesButton").click()
    assert panel.pending_lines() == ["dogs/dogs_1.png: exclude from training"]
    assert panel.state_text(str(dog)) == "exclude (pending)"
    _answer(monkeypatch, True)
    with qtbot.waitSignal(window.data_panel.datasetChanged, timeout=LOAD_MS):
        assert panel.apply_changes()
    assert (image_folder / EXCLUDE_FILE).read_text(encoding="utf-8").splitlines()[-1] == "dogs/dogs_1.png"
    assert str(dog) not in {s.path for s in window.dataset().samples}
    assert (str(dog), "excluded") in {(s.path, s.reason) for s in window.dataset().skipped}
    assert dog.exists()  # left where it is
    assert str(dog) not in {s.path for s in scan_image_folder(image_folder).samples}  # the CLI's scan too


def _panel(qtbot, folder: Path) -> tuple[CheckLabelsPanel, QUndoStack]:
    stack = QUndoStack()
    panel = CheckLabelsPanel(stack)
    qtbot.addWidget(panel)
    panel.set_dataset(scan_image_folder(folder))
    return panel, stack


def test_queue_moves_is_undoable_and_refuses_bad_input_with_a_sentence(qtbot, image_folder):
    panel, stack = _panel(qtbot, image_folder)
    cats = [str(image_folder / "cats" / f"cats_{i}.png") for i in range(2)]
    assert panel.queue_moves(cats, "dogs")
    assert stack.count() == 1 and panel.pending_lines() == ["cats/cats_0.png → dogs", "cats/cats_1.png → dogs"]
    assert not panel.queue_moves(cats[:1], "birds")
    assert "Cannot queue that: there is no class 'birds'" in panel.status_text()
    assert stack.count() == 1
    assert panel.queue_trash(cats[:1])  # a later change of one image replaces its earlier one
    assert panel.pending_lines() == ["cats/cats_1.png → dogs", "cats/cats_0.png: move to the trash  (cannot be undone)"]
    panel.remove_pending([cats[1]])
    assert panel.pending_lines() == ["cats/cats_0.png: move to the trash  (cannot be undone)"]
    stack.undo()
    stack.undo()
    assert panel.pending_lines() == ["cats/cats_0.png → dogs", "cats/cats_1.png → dogs"]
    stack.undo()
    assert panel.pending_count() == 0 and all(Path(p).exists() for p in cats)


def test_the_confirmation_lists_the_changes_and_says_what_cannot_be_undone(qtbot, image_folder):
    panel, _ = _panel(qtbot, image_folder)
    panel.queue_moves([str(image_folder / "cats" / "cats_2.png")], "dogs")
    panel.queue_trash([str(image_folder / "dogs" / "dogs_0.png"), str(image_folder / "dogs" / "dogs_2.png")])
    dialog = ApplyLabelEditsDialog(panel, panel.plan())
    qtbot.addWidget(dialog)
    assert [dialog.changes.item(i).text() for i in range(dialog.changes.count())] == [
        "cats/cats_2.png → dogs", "dogs/dogs_0.png: move to the trash  (cannot be undone)",
        "dogs/dogs_2.png: move to the trash  (cannot be undone)"]
    assert "2 files go to the desktop's trash. Undo cannot bring them back" in dialog.warning.text()
    assert dialog.apply_button.text() == "Apply 3 changes"


def test_an_apply_that_would_overwrite_changes_nothing_and_says_why(qtbot, image_folder, monkeypatch):
    panel, stack = _panel(qtbot, image_folder)
    cat = image_folder / "cats" / "cats_1.png"
    panel.queue_moves([str(cat)], "dogs")
    (image_folder / "dogs" / "cats_1.png").write_bytes(cat.read_bytes())
    asked = _answer(monkeypatch, True)
    assert not panel.apply_changes()
    assert asked == []  # refused before the question
    assert "dogs/cats_1.png already exists" in panel.result_text() and cat.exists()
    assert stack.count() == 1 and panel.pending_count() == 1
