"""Class-activation heatmaps over thumbnails, for every page that lists images.

The Try it page (its dropped images) and the Results page (its misclassified gallery and the
images of a confusion-matrix cell) show the same thing the same way: a row of controls — the
*Heatmap* toggle, the class the map is drawn for ("predicted class" or any class of the model)
and an opacity slider — and, with the toggle on, each thumbnail tinted by ``core.explain``'s
Grad-CAM. :class:`HeatmapController` owns that row (:class:`HeatmapControlsView`) and the job
behind it, so both pages get one behaviour:

* only the images the page says are shown (:meth:`HeatmapController.set_shown`) are explained,
  lazily; a job whose images are no longer shown is stopped at its next image;
* the job runs on a worker thread under the window's model lease, like predictions, so it
  never reads a model that training moves; while the page has no usable model the toggle is
  disabled and the row says why;
* maps are kept at thumbnail size, so the opacity slider re-blends them at once on the GUI
  thread, without a new job; the class picker and a new model compute them again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QSlider, QWidget

from headswap_gui.core.errors import HeadswapError
from headswap_gui.core.explain import CamLayer, explain_image, find_cam_layers, read_image, render_overlay
from headswap_gui.gui.jobs import ModelLease
from headswap_gui.gui.thumbnails import pil_to_qimage
from headswap_gui.gui.worker import GeneratorRunner, start_runner

__all__ = ["HeatmapBatch", "HeatmapControlsView", "HeatmapController", "HeatmapThumbnail", "heatmap_events"]

_BATCH_S = 0.1  # at most ~10 batches a second reach the GUI thread


@dataclass(frozen=True, eq=False)
class HeatmapThumbnail:
    """One image's heatmap at thumbnail size: the thumbnail, the map over it (float, 0..1, same
    size) and the model's view in its pixels; or ``error`` for an image that could not be
    explained, or ``problem`` (no path) when the model cannot be explained at all."""

    path: str
    image: Image.Image | None = None
    heat: np.ndarray | None = None
    crop_box: tuple[float, float, float, float] | None = None
    label: str = ""
    probability: float = 0.0
    error: str | None = None
    problem: str | None = None


@dataclass(frozen=True, eq=False)
class HeatmapBatch:
    """What one batch of a heatmap job brings: its thumbnails, and the layers it explained them
    with, so the next job on the same model skips the traced pass that finds them."""

    items: list[HeatmapThumbnail]
    layers: tuple[CamLayer, ...] = ()


def heatmap_events(
    loaded: Any, paths: Sequence[str], target: str | None, size: int, stop: threading.Event,
    layers: tuple[CamLayer, ...] | None = None,
) -> Iterator[HeatmapBatch]:
    """Explain ``paths`` for class ``target`` (None: each image's predicted class); yield
    thumbnails of at most ``size`` pixels with their maps in time-throttled batches.

    ``layers`` are :func:`find_cam_layers`'s answer from an earlier job on this model (None:
    found here). A model without a spatial layer yields one ``problem`` item; an unreadable
    file only costs its own row."""
    if stop.is_set():
        return  # stopped while it waited for the model: not even the traced pass
    if layers is None:
        try:
            layers = find_cam_layers(loaded.model, loaded.preprocessing.input_size)
        except HeadswapError as error:
            yield HeatmapBatch([HeatmapThumbnail("", problem=str(error))])
            return
    batch: list[HeatmapThumbnail] = []
    last = time.monotonic()
    for path in paths:
        if stop.is_set():
            return
        try:
            image = read_image(path)
            explanation = explain_image(loaded, image, target, layers=layers)
        except HeadswapError as error:
            batch.append(HeatmapThumbnail(path, error=str(error)))
        else:
            thumb = image.copy()
            thumb.thumbnail((size, size))
            scale_x, scale_y = thumb.width / image.width, thumb.height / image.height
            heat = np.asarray(Image.fromarray(explanation.heatmap).resize(thumb.size, Image.Resampling.BILINEAR))
            left, top, right, bottom = explanation.crop_box
            box = (left * scale_x, top * scale_y, right * scale_x, bottom * scale_y)
            batch.append(HeatmapThumbnail(path, thumb, heat, box, explanation.label, explanation.probability))
        now = time.monotonic()
        if now - last >= _BATCH_S:
            yield HeatmapBatch(batch, layers)
            batch, last = [], now
    if batch:
        yield HeatmapBatch(batch, layers)


class HeatmapControlsView(QWidget):
    """The row: toggle, "for:" class picker, opacity slider, and a note on what is going on.

    A view only: :class:`HeatmapController` fills the classes and the note and decides when
    the toggle is available. ``toggled(bool)``, ``targetChanged()`` and ``opacityChanged()``
    follow the user (and the setters)."""

    toggled = Signal(bool)
    targetChanged = Signal()
    opacityChanged = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("heatmapControls")
        self._toggle = QCheckBox(self.tr("Heatmap"), self)
        self._toggle.setObjectName("heatmapCheckBox")
        self._toggle.setAccessibleName(self.tr("Show where the model looks (heatmap over each image)"))
        self._hint = self.tr(
            "Colour each thumbnail by how much each part of the image speaks for the class (Grad-CAM): "
            "red most, blue least"
        )
        self._toggle.setToolTip(self._hint)
        self._toggle.toggled.connect(self._on_toggle_toggled)
        self._class_label = QLabel(self.tr("for:"), self)
        self._class = QComboBox(self)
        self._class.setObjectName("heatmapClassComboBox")
        self._class.setAccessibleName(self.tr("Class the heatmap is drawn for"))
        self._class.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self._class.setMaximumWidth(260)
        self._class_label.setBuddy(self._class)
        self.set_classes(())
        self._class.currentIndexChanged.connect(self._on_class_currentIndexChanged)
        self._opacity_label = QLabel(self.tr("opacity:"), self)
        self._opacity = QSlider(Qt.Orientation.Horizontal, self)
        self._opacity.setObjectName("heatmapOpacitySlider")
        self._opacity.setAccessibleName(self.tr("Heatmap opacity"))
        self._opacity.setRange(0, 100)
        self._opacity.setValue(50)
        self._opacity.setPageStep(10)
        self._opacity.setTracking(False)  # re-blend on release, not on every pixel of a drag
        self._opacity.setMaximumWidth(160)
        self._opacity_label.setBuddy(self._opacity)
        self._opacity.valueChanged.connect(self._on_opacity_valueChanged)
        self._note = QLabel(self)
        self._note.setObjectName("heatmapNoteLabel")
        self._note.setWordWrap(True)
        self._note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self._toggle)
        row.addWidget(self._class_label)
        row.addWidget(self._class)
        row.addWidget(self._opacity_label)
        row.addWidget(self._opacity)
        row.addWidget(self._note, 1)
        self.set_state(available=None, note="")

    def is_on(self) -> bool:
        return self._toggle.isChecked()

    def set_on(self, on: bool) -> None:
        self._toggle.setChecked(on)

    def target(self) -> str | None:
        """The class picked; None: each image's predicted class."""
        return self._class.currentData()

    def set_target(self, name: str | None) -> None:
        index = self._class.findData(name) if name is not None else 0
        if index < 0:
            raise ValueError(f"{name!r} is not one of the model's classes")
        self._class.setCurrentIndex(index)

    def opacity(self) -> float:
        return self._opacity.value() / 100.0

    def set_opacity(self, opacity: float) -> None:
        self._opacity.setValue(round(min(max(opacity, 0.0), 1.0) * 100))

    def set_classes(self, names: Iterable[str]) -> None:
        """Offer ``names`` after "predicted class", keeping the pick where the new model has it
        (without a ``targetChanged``: the caller computes the maps again anyway)."""
        current = self._class.currentData() if self._class.count() else None
        self._class.blockSignals(True)
        self._class.clear()
        self._class.addItem(self.tr("predicted class"), None)
        for name in names:
            self._class.addItem(str(name), str(name))
        index = self._class.findData(current) if current is not None else 0
        self._class.setCurrentIndex(max(index, 0))
        self._class.blockSignals(False)

    def set_state(self, *, available: str | None, note: str) -> None:
        """``available``: None when heatmaps can be computed, else why not (the toggle is then
        disabled and the note says so); ``note``: what is going on otherwise."""
        self._toggle.setEnabled(available is None)
        self._toggle.setToolTip(self._hint if available is None else available)
        on = self.is_on() and available is None
        for widget in (self._class_label, self._class, self._opacity_label, self._opacity):
            widget.setEnabled(on)
        self._note.setText(available if available is not None else note)

    @Slot(bool)
    def _on_toggle_toggled(self, checked: bool) -> None:
        self.toggled.emit(checked)

    @Slot(int)
    def _on_class_currentIndexChanged(self, _index: int) -> None:
        self.targetChanged.emit()

    @Slot(int)
    def _on_opacity_valueChanged(self, _value: int) -> None:
        self.opacityChanged.emit()


class HeatmapController(QObject):
    """The heatmaps of one page: its controls row (:attr:`view`, for the page's layout), the
    job that computes maps for the images the page shows, and the overlays it draws.

    The page calls :meth:`set_model` with its model (or None and the reason it has none),
    :meth:`set_shown` whenever the images on screen change, and draws :meth:`overlay` in place
    of a thumbnail where it is not None. Signals: ``overlaysChanged(list[str])`` — the overlay
    of these paths changed (new, re-blended, or gone); ``heatmapsReady()`` — a job ended with
    every shown image explained (or the reason it is not); ``runningChanged(bool)`` — a job
    started or ended.

    ``may_start`` lets a page that runs its own job on the model put it first (Try it predicts
    before it explains): while it answers False no job starts, and the page calls
    :meth:`resume` when its job has ended.
    """

    overlaysChanged = Signal(object)
    heatmapsReady = Signal()
    runningChanged = Signal(bool)

    def __init__(self, parent: QWidget, size: int, *, may_start: Callable[[], bool] | None = None) -> None:
        super().__init__(parent)
        self.view = HeatmapControlsView(parent)
        self.model_lease: ModelLease | None = None  # the window's: the job waits its turn on the model
        self._size = int(size)
        self._may_start = may_start
        self._loaded: Any = None
        self._unavailable: str | None = self.tr("Load a model to see heatmaps")
        self._layers: tuple[CamLayer, ...] | None = None  # found by the first job on this model
        self._shown: dict[str, None] = {}  # in the page's order
        self._data: dict[str, HeatmapThumbnail] = {}
        self._rendered: dict[str, QImage] = {}  # at the current opacity
        self._pending: list[str] = []
        self._in_flight: set[str] = set()
        self._runner: GeneratorRunner | None = None
        self._problem: str | None = None  # why this model has no heatmaps at all
        self.view.toggled.connect(self._on_view_toggled)
        self.view.targetChanged.connect(self._on_view_targetChanged)
        self.view.opacityChanged.connect(self._on_view_opacityChanged)
        self._update_view()

    # -- what the page tells it ---------------------------------------------------------------

    def set_model(self, loaded: Any, unavailable: str | None = None) -> None:
        """Explain with ``loaded`` (a ``LoadedModel``), or with nothing: ``unavailable`` then
        says why (default: no model loaded). Every map is computed again."""
        structure_only = bool(getattr(loaded, "structure_only", False))
        if unavailable is None and loaded is None:
            unavailable = self.tr("Load a model to see heatmaps")
        elif unavailable is None and structure_only:
            unavailable = self.tr("The model was loaded without weights: load it with weights to see heatmaps")
        self._loaded = loaded if unavailable is None else None
        self._unavailable = unavailable
        self._layers = None
        self.view.set_classes(getattr(loaded, "class_names", None) or ())
        self._reset()

    def set_shown(self, paths: Iterable[str]) -> None:
        """The images the page shows now, in its order: those without a map are explained (with
        the toggle on), and a job still on images no longer shown is stopped."""
        self._shown = dict.fromkeys(paths)
        if self._in_flight - self._shown.keys():
            self._stop()  # what it still holds for shown images is queued again below
        self._pending = [path for path in self._pending if path in self._shown]
        self._queue_shown()
        self._start()
        self._update_view()

    def resume(self) -> None:
        """Start the job that waited for ``may_start`` (the page's own job has ended)."""
        self._start()
        self._update_view()

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop the job and wait for it (window close); True when it ended in time."""
        self._shown = {}
        self._stop()
        return self._runner.wait(timeout_ms) if self._runner is not None else True

    # -- what the page asks ------------------------------------------------------------------

    def is_enabled(self) -> bool:
        return self.view.is_on()

    def set_enabled(self, enabled: bool) -> None:
        self.view.set_on(enabled)

    def target(self) -> str | None:
        """The class the maps are drawn for; None: each image's predicted class."""
        return self.view.target()

    def set_target(self, name: str | None) -> None:
        self.view.set_target(name)

    def opacity(self) -> float:
        return self.view.opacity()

    def set_opacity(self, opacity: float) -> None:
        self.view.set_opacity(opacity)

    def overlay(self, path: str) -> QImage | None:
        """The thumbnail of ``path`` with its map blended over it, while the toggle is on and
        the map exists; else None (the page shows its plain thumbnail)."""
        item = self._data.get(path)
        if not self.is_enabled() or item is None or item.image is None or item.heat is None:
            return None
        image = self._rendered.get(path)
        if image is None:
            image = self._rendered[path] = pil_to_qimage(
                render_overlay(item.image, item.heat, self.opacity(), item.crop_box)
            )
        return image

    def label(self, path: str) -> str | None:
        """The class the map of ``path`` is drawn for (None: no map shown)."""
        return self._data[path].label if self.overlay(path) is not None else None

    def error(self, path: str) -> str | None:
        """Why ``path`` has no map (an unreadable file), or None."""
        item = self._data.get(path)
        return item.error if item is not None else None

    def problem(self) -> str | None:
        """Why the current model has no heatmaps at all (e.g. no spatial layer), or None."""
        return self._problem

    def count(self) -> int:
        """Shown images that have their map."""
        return sum(1 for path in self._shown if path in self._data and self._data[path].image is not None)

    def is_running(self) -> bool:
        return self._runner is not None and self._runner.is_running()

    # -- the job ------------------------------------------------------------------------------

    def _reset(self) -> None:
        """Forget every map (another model or class) and compute the shown ones again."""
        self._stop()
        gone = list(self._data)
        self._data, self._rendered, self._problem = {}, {}, None
        if gone and self.is_enabled():
            self.overlaysChanged.emit(gone)
        self._queue_shown()
        self._start()
        self._update_view()

    def _can_explain(self) -> bool:
        return self.is_enabled() and self._loaded is not None and self._problem is None

    def _queue_shown(self) -> None:
        if not self._can_explain():
            return
        queued = set(self._pending) | self._in_flight
        self._pending += [path for path in self._shown if path not in self._data and path not in queued]

    def _stop(self) -> None:
        self._pending, self._in_flight = [], set()
        if self._runner is not None:
            self._runner.request_stop()  # its late results are ignored (stop_requested)

    def _start(self) -> None:
        if not self._pending or not self._can_explain() or self.is_running():
            return  # a running job picks the pending ones up when it ends
        if self._may_start is not None and not self._may_start():
            return  # the page's own job first; it calls resume()
        paths, self._pending = self._pending, []
        self._in_flight = set(paths)
        loaded, target, size, layers = self._loaded, self.target(), self._size, self._layers
        self._runner = start_runner(
            lambda stop: heatmap_events(loaded, paths, target, size, stop, layers),
            self._on_runner_eventEmitted, self._on_runner_failed, self._on_runner_finished,
            lease=self.model_lease, lease_as="explain",
        )
        self.runningChanged.emit(True)

    def _update_view(self) -> None:
        if self._problem:
            note = self.tr("No heatmaps for this model: {reason}").format(reason=self._problem)
        elif self.is_enabled() and self.is_running():
            note = self.tr("Computing heatmaps…")
        else:
            note = ""
        self.view.set_state(available=self._unavailable, note=note)

    @Slot(object)
    def _on_runner_eventEmitted(self, batch: object) -> None:
        runner = self.sender()
        if runner is not self._runner or not isinstance(batch, HeatmapBatch) or self._runner.stop_requested():
            return
        self._layers = batch.layers or self._layers
        changed = []
        for item in batch.items:
            if item.problem is not None:
                self._problem, self._pending = item.problem, []
                continue
            self._in_flight.discard(item.path)
            self._data[item.path] = item
            self._rendered.pop(item.path, None)
            changed.append(item.path)
        if changed and self.is_enabled():
            self.overlaysChanged.emit(changed)
        self._update_view()

    @Slot(str)
    def _on_runner_failed(self, message: str) -> None:
        if self.sender() is self._runner:
            self._problem, self._pending = message, []

    @Slot()
    def _on_runner_finished(self) -> None:
        runner = self.sender()
        if runner is not self._runner:
            return
        completed = not runner.stop_requested()
        self._runner = None
        self._in_flight = set()
        self.runningChanged.emit(False)
        self._start()
        self._update_view()
        if completed and not self.is_running() and not self._pending and self.is_enabled():
            self.heatmapsReady.emit()

    @Slot(bool)
    def _on_view_toggled(self, on: bool) -> None:
        if on:
            self._queue_shown()
            self._start()
        else:
            self._stop()
        if self._data:  # every map kept, shown now or drawn on a list the page keeps aside
            self.overlaysChanged.emit(list(self._data))
        self._update_view()

    @Slot()
    def _on_view_targetChanged(self) -> None:
        self._reset()

    @Slot()
    def _on_view_opacityChanged(self) -> None:
        self._rendered = {}  # re-blended from the kept maps when next drawn: no new job
        if self._data and self.is_enabled():
            self.overlaysChanged.emit(list(self._data))
