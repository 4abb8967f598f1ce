"""The image viewer: a double-clicked (or Enter-ed) thumbnail anywhere opens the image large,
decoded as training reads it, small images enlarged with hard pixel edges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from headswap_gui.gui.image_viewer import ImageViewer

LOAD_MS = 60_000


@pytest.fixture
def checkerboard(tmp_path) -> Path:
    """An 8×8 black-and-white checkerboard: any blur would show as grey."""
    pixels = (np.indices((8, 8)).sum(axis=0) % 2 * 255).astype(np.uint8)
    path = tmp_path / "board.png"
    Image.fromarray(pixels).save(path)
    return path


def test_a_small_image_is_enlarged_with_hard_pixel_edges(qtbot, checkerboard) -> None:
    viewer = ImageViewer(None)
    qtbot.addWidget(viewer)
    viewer.show_image(str(checkerboard), note="true 3 → predicted 9")
    qtbot.waitExposed(viewer)
    shown = viewer.shown_size()
    assert shown.width() >= 160 and shown.width() == shown.height()  # fitted, aspect kept
    image = viewer.findChild(object, "imageViewerPicture").pixmap().toImage()
    cell = shown.width() / 8
    grey = {image.pixelColor(int(x * cell + cell / 2), int(cell / 2)).lightness() for x in range(8)}
    assert grey == {0, 255}  # every cell pure black or white: no smoothing
    caption = viewer.findChild(object, "imageViewerCaption").text()
    assert "board.png" in caption and "8×8 px" in caption and "true 3 → predicted 9" in caption


def test_an_unreadable_file_is_said_so_in_the_caption(qtbot, tmp_path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    viewer = ImageViewer(None)
    qtbot.addWidget(viewer)
    viewer.show_image(str(broken))
    caption = viewer.findChild(object, "imageViewerCaption").text()
    assert "broken.png cannot be shown" in caption and "Error" not in caption
    assert viewer.shown_size().isEmpty()


def test_a_sample_on_the_data_page_opens_large_and_goes_on_to_try_it(qtbot, window, tmp_path) -> None:
    root = tmp_path / "shapes"
    for label, value in (("dark", 30), ("light", 220)):
        (root / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((12, 12), value + i, np.uint8)).save(root / label / f"{label}_{i}.png")
    with qtbot.waitSignal(window.data_panel.datasetChanged, timeout=LOAD_MS):
        window.open_data_folder(str(root))
    view = window.data_panel.findChild(object, "classThumbnailView")
    view.setFocus()
    view.setCurrentIndex(view.model().index(1, 0))  # the first "light" sample
    with qtbot.waitSignal(window.data_panel.imageActivated, timeout=5000) as blocker:
        qtbot.keyClick(view, Qt.Key.Key_Return)
    viewer = window.findChild(ImageViewer)
    assert viewer is not None and viewer.isVisible() and viewer.path() == blocker.args[0]
    assert Path(viewer.path()).parent.name == "light"
    viewer.try_button.click()
    assert window.tabs.currentWidget() is window.try_panel
    qtbot.waitUntil(lambda: window.try_panel.image_paths() == [viewer.path()], timeout=5000)
    viewer.close()
