"""DataPanel: scanning off the GUI thread, counts, skipped files, errors, drops, thumbnails."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QPushButton

from headswap_gui.core.data import DatasetInfo
from headswap_gui.gui.data_panel import THUMBNAILS_PER_CLASS, DataPanel


def write_folder(root: Path, counts: dict[str, int], size: tuple[int, int] = (20, 16)) -> Path:
    for ci, (name, count) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("RGB", size, (40 * ci % 255, 9 * i % 255, 120)).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture
def panel(qtbot) -> DataPanel:
    widget = DataPanel()
    qtbot.addWidget(widget)
    widget.resize(900, 600)
    return widget


def load(qtbot, panel: DataPanel, folder: Path) -> DatasetInfo:
    with qtbot.waitSignal(panel.datasetChanged, timeout=10000) as blocker:
        panel.load_folder(folder)
    qtbot.waitUntil(lambda: not panel.is_scanning() and not panel.thumbnails_loading(), timeout=10000)
    return blocker.args[0]


def test_load_folder_shows_counts_and_thumbnails(qtbot, panel, tmp_path) -> None:
    folder = write_folder(tmp_path / "pets", {"cats": 3, "dogs": 8})
    info = load(qtbot, panel, folder)

    assert isinstance(info, DatasetInfo)
    assert panel.dataset() is info
    assert panel.class_count_items() == {"cats": 3, "dogs": 8}
    assert "2 classes" in panel.summary_text() and "11 images" in panel.summary_text()
    assert panel.skipped_count() == 0
    assert panel.error_message() == ""
    assert panel.imbalance_warning() == ""  # 8 / 3 is within the 3x limit
    # A few thumbnails per class, decoded off the GUI thread.
    assert panel.thumbnail_count() == 3 + min(8, THUMBNAILS_PER_CLASS)


def test_salted_folder_lists_skipped_files(qtbot, panel, tmp_path) -> None:
    folder = write_folder(tmp_path / "salted", {"a": 2, "b": 2})
    (folder / "a" / "broken.png").write_bytes(b"this is not a png")
    (folder / "b" / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("loose file")
    load(qtbot, panel, folder)

    assert panel.class_count_items() == {"a": 2, "b": 2}
    assert panel.skipped_count() == 3
    toggle = panel.findChild(object, "skippedFilesToggle")
    assert "3" in toggle.text() and toggle.isEnabled()
    tree = panel.findChild(object, "skippedFilesList")
    rows = {tree.topLevelItem(i).text(0): tree.topLevelItem(i).text(1) for i in range(3)}
    assert rows[str(Path("b") / "empty.jpg")] == "zero bytes"
    assert rows["notes.txt"] == "not in a class folder"
    assert tree.isHidden()
    qtbot.mouseClick(toggle, Qt.MouseButton.LeftButton)
    assert not tree.isHidden()


@pytest.mark.parametrize("classes", [{}, {"only": 2}])
def test_unusable_folder_shows_clear_message(qtbot, panel, tmp_path, classes) -> None:
    folder = write_folder(tmp_path / "bad", classes)
    folder.mkdir(exist_ok=True)
    with qtbot.waitSignal(panel.scanFailed, timeout=10000) as blocker:
        panel.load_folder(folder)
    qtbot.waitUntil(lambda: not panel.is_scanning(), timeout=5000)

    message = blocker.args[0]
    assert "at least 2 are needed" in message
    assert message in panel.error_message()
    assert panel.dataset() is None


def test_flat_folder_explains_and_offers_to_try_the_images(qtbot, panel, tmp_path) -> None:
    folder = tmp_path / "holiday"
    folder.mkdir()
    images = [str(folder / f"{i}.png") for i in range(3)]
    for path in images:
        Image.new("RGB", (20, 16), (200, 30, 30)).save(path)
    panel.show()
    qtbot.waitExposed(panel)
    offer = panel.findChild(QPushButton, "tryLooseImagesButton")
    with qtbot.waitSignal(panel.scanFailed, timeout=10000):
        panel.load_folder(folder)
    qtbot.waitUntil(lambda: not panel.is_scanning(), timeout=5000)

    assert "holds 3 images but no class folders: make one subfolder per class" in panel.error_message()
    assert panel.dataset() is None
    assert offer.isVisible() and offer.text() == "Classify them in Try it"
    with qtbot.waitSignal(panel.tryImagesRequested, timeout=1000) as blocker:
        qtbot.mouseClick(offer, Qt.MouseButton.LeftButton)
    assert blocker.args == [images]

    load(qtbot, panel, write_folder(tmp_path / "pets", {"cats": 2, "dogs": 2}))
    assert not offer.isVisible() and panel.error_message() == ""


def test_failed_scan_keeps_previous_dataset(qtbot, panel, tmp_path) -> None:
    good = load(qtbot, panel, write_folder(tmp_path / "good", {"x": 2, "y": 2}))
    with qtbot.waitSignal(panel.scanFailed, timeout=10000):
        panel.load_folder(tmp_path / "missing")
    qtbot.waitUntil(lambda: not panel.is_scanning(), timeout=5000)
    assert panel.dataset() is good
    assert "not found" in panel.error_message()


def test_imbalance_warning_names_the_small_class(qtbot, panel, tmp_path) -> None:
    load(qtbot, panel, write_folder(tmp_path / "imb", {"big": 10, "mid": 5, "tiny": 2}))
    warning = panel.imbalance_warning()
    assert "'tiny'" in warning and "'big'" in warning
    assert "'mid'" not in warning  # 10 / 5 is not past the limit


def _drop(panel: DataPanel, paths: list[Path]) -> tuple[bool, bool]:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(panel.width() / 2, panel.height() / 2)
    enter = QDragEnterEvent(
        pos.toPoint(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(panel, enter)
    drop = QDropEvent(
        pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(panel, drop)
    return enter.isAccepted(), drop.isAccepted()


def test_dropping_a_folder_loads_it(qtbot, panel, tmp_path) -> None:
    folder = write_folder(tmp_path / "dropped", {"left": 2, "right": 3})
    with qtbot.waitSignal(panel.datasetChanged, timeout=10000):
        accepted = _drop(panel, [folder])
    assert accepted == (True, True)
    qtbot.waitUntil(lambda: not panel.is_scanning() and not panel.thumbnails_loading(), timeout=10000)
    assert panel.class_count_items() == {"left": 2, "right": 3}
    assert panel.thumbnail_count() == 5


def test_dropping_a_file_explains_what_to_drop(qtbot, panel, tmp_path) -> None:
    file = tmp_path / "one.png"
    Image.new("RGB", (8, 8)).save(file)
    with qtbot.waitSignal(panel.scanFailed, timeout=2000):
        _drop(panel, [file])
    assert "not a folder" in panel.error_message()
    assert not panel.is_scanning()


def test_choose_folder_uses_the_dialog(qtbot, panel, tmp_path, monkeypatch) -> None:
    folder = write_folder(tmp_path / "chosen", {"p": 2, "q": 2})
    monkeypatch.setattr(DataPanel, "ask_folder", classmethod(lambda cls, parent, start="": str(folder)))
    with qtbot.waitSignal(panel.datasetChanged, timeout=10000):
        qtbot.mouseClick(panel.findChild(object, "chooseFolderButton"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.is_scanning() and not panel.thumbnails_loading(), timeout=10000)
    assert panel.dataset().root == str(folder)


def test_interactive_widgets_are_named(panel) -> None:
    for name in ("chooseFolderButton", "skippedFilesToggle", "skippedFilesList", "classThumbnailView"):
        widget = panel.findChild(object, name)
        assert widget is not None and widget.accessibleName()
