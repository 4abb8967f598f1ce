"""Image thumbnails decoded off the GUI thread.

Images are read with :func:`headswap_gui.core.images.load_image` (upright, RGB, the way the
model sees them), shrunk with Pillow and turned into ``QImage`` on a worker thread — a
``QImage`` may be created on any thread, a ``QPixmap`` only on the GUI thread. Results come
back in small batches (at most ~20 signals a second), so a folder of a thousand images does
not flood the event loop, and the GUI never waits on a decoder.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QSize, Qt, Signal, Slot
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPalette, QPixmap

from headswap_gui.core.images import load_image
from headswap_gui.gui.worker import GeneratorRunner

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "DEFAULT_THUMBNAIL_SIZE",
    "Thumbnail",
    "ThumbnailLoader",
    "iter_thumbnails",
    "pil_to_qimage",
    "placeholder_pixmap",
]

DEFAULT_THUMBNAIL_SIZE = 96
_BATCH_INTERVAL_S = 0.05
_BATCH_MAX = 48
_CACHE_LIMIT = 4000


@dataclass(frozen=True)
class Thumbnail:
    """One decoded thumbnail (``image``) or the reason it could not be made (``error``)."""

    path: str
    image: QImage | None
    error: str | None = None


def pil_to_qimage(image: Image.Image) -> QImage:
    """A deep-copied ``QImage`` (RGB888) of a Pillow image; safe on any thread."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = rgb.size
    data = rgb.tobytes("raw", "RGB")
    # The QImage only borrows ``data``; copy() gives it its own buffer before ``data`` dies.
    return QImage(data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def make_thumbnail(path: str, size: int) -> QImage:
    """Decode ``path`` and shrink it to fit ``size`` × ``size`` (aspect ratio kept)."""
    image = load_image(path)
    image.thumbnail((size, size))
    return pil_to_qimage(image)


def iter_thumbnails(
    paths: Sequence[str], size: int, stop: threading.Event | None = None
) -> Iterator[list[Thumbnail]]:
    """Yield thumbnails of ``paths`` in order, in time-throttled batches.

    Unreadable files become a :class:`Thumbnail` with ``error`` set instead of stopping the
    job. Watches ``stop`` between images.
    """
    batch: list[Thumbnail] = []
    last = time.monotonic()
    for path in paths:
        if stop is not None and stop.is_set():
            break
        try:
            batch.append(Thumbnail(path, make_thumbnail(path, size)))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is just shown as such
            batch.append(Thumbnail(path, None, f"{type(exc).__name__}: {exc}"))
        now = time.monotonic()
        if len(batch) >= _BATCH_MAX or now - last >= _BATCH_INTERVAL_S:
            yield batch
            batch, last = [], now
    if batch:
        yield batch


class ThumbnailLoader(QObject):
    """Loads thumbnails on worker threads and remembers them (bounded cache).

    ``thumbnailsReady(list[Thumbnail])`` arrives on the GUI thread; ``idle()`` is emitted when
    no job is left. Paths already cached are delivered at once, inside :meth:`load`.
    """

    thumbnailsReady = Signal(object)
    idle = Signal()

    def __init__(self, size: int = DEFAULT_THUMBNAIL_SIZE, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._size = int(size)
        self._cache: OrderedDict[str, Thumbnail] = OrderedDict()
        self._runners: list[GeneratorRunner] = []
        self._closed = False

    def size(self) -> int:
        return self._size

    def cached(self, path: str) -> Thumbnail | None:
        return self._cache.get(os.fspath(path))

    def load(self, paths: Iterable[str]) -> None:
        """Queue ``paths``; cached ones are emitted immediately, the rest from a worker
        (none after :meth:`close`)."""
        if self._closed:
            return
        wanted, seen, ready = [], set(), []
        for path in (os.fspath(p) for p in paths):
            if path in seen:
                continue
            seen.add(path)
            hit = self._cache.get(path)
            if hit is not None:
                self._cache.move_to_end(path)
                ready.append(hit)
            else:
                wanted.append(path)
        if ready:
            self.thumbnailsReady.emit(ready)
        if not wanted:
            return
        size = self._size
        runner = GeneratorRunner(lambda stop: iter_thumbnails(wanted, size, stop), stop_grace_s=0.0)
        runner.eventEmitted.connect(self._on_runner_eventEmitted)
        runner.finished.connect(self._on_runner_finished)
        self._runners.append(runner)
        runner.start()

    def cancel(self) -> None:
        """Ask every running job to stop; results still in flight are dropped."""
        for runner in self._runners:
            runner.request_stop()

    def is_busy(self) -> bool:
        return any(runner.is_running() for runner in self._runners)

    def wait(self, timeout_ms: int = 5000) -> bool:
        """Stop and wait for every job (for shutdown); True when all ended in time."""
        self.cancel()
        return all([runner.wait(timeout_ms) for runner in list(self._runners)])

    def close(self, timeout_ms: int = 5000) -> bool:
        """Stop and wait for every job, and start no new one (window close: a result that
        arrives while the window waits must not set off another job)."""
        self._closed = True
        return self.wait(timeout_ms)

    def clear_cache(self) -> None:
        self._cache.clear()

    @Slot(object)
    def _on_runner_eventEmitted(self, batch: object) -> None:
        runner = self.sender()
        if isinstance(runner, GeneratorRunner) and runner.stop_requested():
            return
        items = list(batch)  # type: ignore[arg-type]
        for item in items:
            self._cache[item.path] = item
            self._cache.move_to_end(item.path)
        while len(self._cache) > _CACHE_LIMIT:
            self._cache.popitem(last=False)
        self.thumbnailsReady.emit(items)

    @Slot()
    def _on_runner_finished(self) -> None:
        self._runners = [runner for runner in self._runners if runner.is_running()]
        if not self._runners:
            self.idle.emit()


def placeholder_pixmap(size: QSize | int, palette: QPalette, broken: bool = False) -> QPixmap:
    """A neutral square shown while a thumbnail loads (or a crossed one if it failed)."""
    side = size if isinstance(size, int) else max(size.width(), size.height())
    pixmap = QPixmap(side, side)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    fill = QColor(palette.color(QPalette.ColorRole.Mid))
    fill.setAlpha(70)
    painter.setBrush(fill)
    edge = QColor(palette.color(QPalette.ColorRole.Mid))
    painter.setPen(edge)
    inset = max(2, side // 16)
    painter.drawRoundedRect(inset, inset, side - 2 * inset, side - 2 * inset, 4, 4)
    if broken:
        painter.setPen(QColor(200, 60, 60))
        painter.drawLine(side // 3, side // 3, 2 * side // 3, 2 * side // 3)
        painter.drawLine(2 * side // 3, side // 3, side // 3, 2 * side // 3)
    painter.end()
    return pixmap


def fit_pixmap(image: QImage, side: int) -> QPixmap:
    """A ``side`` × ``side`` pixmap with ``image`` centred in it (GUI thread only), so icons
    of any aspect ratio line up in a grid."""
    pixmap = QPixmap(side, side)
    pixmap.fill(Qt.GlobalColor.transparent)
    scaled = QPixmap.fromImage(image)
    longest = max(scaled.width(), scaled.height(), 1)
    if longest > side:
        scaled = scaled.scaled(
            side, side, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
    elif longest * 2 <= side:
        # Tiny images (8×8 digits) are blown up with crisp pixels rather than left as a dot.
        factor = side // longest
        scaled = scaled.scaled(
            scaled.width() * factor, scaled.height() * factor,
            Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation,
        )
    painter = QPainter(pixmap)
    painter.drawPixmap((side - scaled.width()) // 2, (side - scaled.height()) // 2, scaled)
    painter.end()
    return pixmap


def icon_for(thumbnail: Thumbnail | None, side: int, palette: QPalette) -> QIcon:
    """The icon for a thumbnail slot: the image, a placeholder, or a broken-image mark."""
    if thumbnail is None:
        return QIcon(placeholder_pixmap(side, palette))
    if thumbnail.image is None:
        return QIcon(placeholder_pixmap(side, palette, broken=True))
    return QIcon(fit_pixmap(thumbnail.image, side))
