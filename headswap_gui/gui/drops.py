"""What a dropped (or given) set of paths means, and the filter that routes drops to the window.

A drop anywhere on the window opens what it can: a model file or run folder loads, a folder
of class subfolders becomes the training images, loose images (or a flat folder of them) are
tried on the model. The Data and Try it pages take their own kind of drop; every other drop
goes to the window through :class:`DropRouter`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from PySide6.QtCore import QEvent, QObject, QUrl

if TYPE_CHECKING:
    from headswap_gui.gui.main_window import MainWindow

__all__ = ["DropRouter", "Route", "classify_paths", "image_paths", "local_paths", "model_path", "training_folder"]

MODEL_FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")  # = sources.STATE_DICT_SUFFIXES
MODEL_FOLDER_MARKER = "headswap.json"  # = run_manifest.MANIFEST_FILE (core is not imported at start-up)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})

Route = Literal["model", "data", "images", ""]


def model_path(paths: Sequence[str]) -> str | None:
    """The first model among ``paths``, as ``load_model`` takes it (a run folder for its
    ``headswap.json``)."""
    for path in paths:
        p = Path(path)
        if p.is_dir() and (p / MODEL_FOLDER_MARKER).is_file():
            return str(p)
        if p.is_file() and p.name == MODEL_FOLDER_MARKER:
            return str(p.parent)
        if p.is_file() and p.suffix.lower() in MODEL_FILE_SUFFIXES:
            return str(p)
    return None


def training_folder(paths: Sequence[str]) -> str | None:
    """The first folder with class subfolders among ``paths``."""
    return next((p for p in paths if Path(p).is_dir() and not _is_flat_image_folder(Path(p))), None)


def image_paths(paths: Sequence[str]) -> list[str]:
    """Images and folders of images among ``paths``, to try on the model."""
    return [p for p in paths if Path(p).is_dir() or (Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES)]


def classify_paths(paths: Sequence[str]) -> Route:
    """What opening ``paths`` means: "model", "data", "images" or "" (nothing usable)."""
    if model_path(paths) is not None:
        return "model"
    if training_folder(paths) is not None:
        return "data"
    if any(Path(p).is_dir() for p in paths) or any(
        Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES for p in paths
    ):
        return "images"  # loose images, or a folder of them: try the model on them
    return ""


def local_paths(urls: Sequence[QUrl]) -> list[str]:
    return [url.toLocalFile() for url in urls if url.isLocalFile() and url.toLocalFile()]


def _is_flat_image_folder(folder: Path) -> bool:
    """A folder with images directly inside and no subfolders (not a class-per-folder set)."""
    try:
        with os.scandir(folder) as entries:
            has_image = False
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    return False
                has_image = has_image or Path(entry.name).suffix.lower() in IMAGE_SUFFIXES
            return has_image
    except OSError:
        return False


class DropRouter(QObject):
    """Routes drops on any widget to the window, except the drops a page handles itself
    (folders on the Data page, images on the Try it page). Install it on every child that
    accepts drops; the window itself takes drops on its own frame the same way."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self._window = window
        self._last: tuple[tuple[str, ...], Route] = ((), "")  # drag moves repeat the same paths

    def route(self, paths: list[str]) -> Route:
        key = tuple(paths)
        if key != self._last[0]:
            self._last = (key, classify_paths(paths))
        return self._last[1]

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        kind = event.type()
        if kind not in (QEvent.Type.DragEnter, QEvent.Type.DragMove, QEvent.Type.Drop):
            return False
        paths = local_paths(event.mimeData().urls()) if event.mimeData().hasUrls() else []  # type: ignore[attr-defined]
        if not paths:
            return False
        route = self.route(paths)
        if route == "" or self._window.page_handles_drop(watched, route):
            return False
        event.acceptProposedAction()  # type: ignore[attr-defined]
        if kind == QEvent.Type.Drop:
            self._window.open_paths(paths)
        return True
