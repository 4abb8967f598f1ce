""""Map": every image of the Data page's folder as a point, placed by the model's features.

The map is core's :func:`~headswap_gui.core.embedding.compute_embedding` (features, PCA,
t-SNE), run as a job under the window's model lease like the Try it page's, with its
progress (and ETA) on the page and a Stop button. Points are coloured by their folder's class
(one scatter item, so one brush, per class: pyqtgraph's fast path, no per-point objects),
and the images the model gets wrong carry a ring. Hovering a point shows its thumbnail and
file name beside the map; a click opens the image. The lasso (the Lasso button, or a drag
with Shift held) picks the points inside the drawn outline, and "Relabel selected as ▸"
asks for those files to be moved to another class (``relabelRequested``; the window hands
the request to the Check labels page, which moves the files).

Finding the point under the pointer and the points inside the lasso are numpy over the
coordinates, so both stay instant at 20,000 points.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from headswap_gui.gui.qt_env import prepare_qt_environment

prepare_qt_environment()

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import QEvent, QPointF, Qt, Signal, Slot  # noqa: E402
from PySide6.QtGui import QColor, QPainterPath, QPalette, QPen  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QComboBox,
    QGraphicsPathItem,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from headswap_gui.core.embedding import (  # noqa: E402
    FEATURES_STAGE,
    NEIGHBOURS_STAGE,
    PROJECTION_STAGE,
    EmbeddingConfig,
    EmbeddingFinished,
    EmbeddingInfo,
    EmbeddingStarted,
    class_colours,
    compute_embedding,
)
from headswap_gui.core.events import Note, Progress  # noqa: E402
from headswap_gui.gui.buttons import push_button  # noqa: E402
from headswap_gui.gui.jobs import ModelLease, leased  # noqa: E402
from headswap_gui.gui.progress_bar import ProgressBar  # noqa: E402
from headswap_gui.gui.thumbnails import ThumbnailLoader, fit_pixmap  # noqa: E402
from headswap_gui.gui.training_panel import format_duration  # noqa: E402
from headswap_gui.gui.worker import GeneratorRunner  # noqa: E402

__all__ = ["MapPanel", "points_in_polygon"]

_POINT_PX = 6
_RING_PX = 12
_PICK_PX = 8  # how near (in pixels) the pointer must be to a point to hover or click it
_PREVIEW_PX = 160


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Per row of ``points`` (N, 2), whether it lies inside ``polygon`` (K, 2; closed
    implicitly), by the even-odd rule: a ray to the right crosses the outline an odd number
    of times. Vectorised over the points, one step per edge."""
    points = np.asarray(points, dtype=np.float64)
    polygon = np.asarray(polygon, dtype=np.float64)
    inside = np.zeros(len(points), dtype=bool)
    if len(polygon) < 3:
        return inside
    x, y = points[:, 0], points[:, 1]
    for (xi, yi), (xj, yj) in zip(polygon, np.roll(polygon, 1, axis=0)):
        if yi == yj:
            continue  # a horizontal edge crosses no horizontal ray
        crosses = (yi > y) != (yj > y)
        inside ^= crosses & (x < (xj - xi) * (y - yi) / (yj - yi) + xi)
    return inside


class _LassoViewBox(pg.ViewBox):
    """A ViewBox whose left-button drag draws a lasso (in lasso mode, or with Shift held)
    instead of panning; the outline, in data coordinates, arrives as ``lassoDrawn``."""

    lassoDrawn = Signal(object)  # (K, 2) float array

    def __init__(self) -> None:
        super().__init__()
        self.lasso_mode = False
        self._outline: list[QPointF] = []
        self._path_item = QGraphicsPathItem()
        pen = QPen(QColor(0, 0, 0, 180), 1.5, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self._path_item.setPen(pen)
        self._path_item.setZValue(10)
        self.addItem(self._path_item, ignoreBounds=True)

    def mouseDragEvent(self, ev: Any, axis: Any = None) -> None:  # noqa: N802 - pyqtgraph override
        lasso = self.lasso_mode or bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if not lasso or ev.button() != Qt.MouseButton.LeftButton or axis is not None:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        if ev.isStart():
            self._outline = [self.mapSceneToView(ev.buttonDownScenePos())]
        self._outline.append(self.mapSceneToView(ev.scenePos()))
        path = QPainterPath(self._outline[0])
        for point in self._outline[1:]:
            path.lineTo(point)
        path.closeSubpath()
        self._path_item.setPath(path)
        if ev.isFinish():
            outline = np.array([(p.x(), p.y()) for p in self._outline])
            self._outline = []
            self._path_item.setPath(QPainterPath())
            self.lassoDrawn.emit(outline)


class MapPanel(QWidget):
    """The Map page. The window gives it the model (:meth:`set_model`, None while a run owns
    it) and the dataset (:meth:`set_dataset`); :meth:`compute` starts the job.

    Signals: ``mapReady()`` when a computed map is shown, ``imageActivated(str)`` for a
    clicked point, ``relabelRequested(list[str], str)`` (paths, class name) and
    ``selectionChanged(int)`` (the number of points picked).
    """

    mapReady = Signal()
    imageActivated = Signal(str)
    relabelRequested = Signal(list, str)
    selectionChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mapPanel")
        self.setAccessibleName(self.tr("Map of the images by the model's features"))
        self.model_lease: ModelLease | None = None  # the window's: the map waits its turn on the model
        self._loaded: Any = None
        self._dataset: Any = None
        self._runner: GeneratorRunner | None = None
        self._notes: list[str] = []  # what the running job said on the way, shown with its result
        self._ended = False  # the running job sent its EmbeddingFinished
        self._info: EmbeddingInfo | None = None
        self._selected = np.zeros(0, dtype=bool)
        self._hovered: int | None = None
        self._class_items: list[pg.ScatterPlotItem] = []
        self._stage_text = {FEATURES_STAGE: self.tr("Computing features"),
                            NEIGHBOURS_STAGE: self.tr("Finding neighbours"), PROJECTION_STAGE: self.tr("Projecting")}
        self._thumbnails = ThumbnailLoader(size=_PREVIEW_PX, parent=self)
        self._thumbnails.thumbnailsReady.connect(self._on_thumbnails_thumbnailsReady)
        self._build()
        self._update_controls()

    # -- construction -----------------------------------------------------------------------

    def _build(self) -> None:
        self._compute_button = push_button(
            self, self.tr("Compute map"), name="computeMapButton", accessible=self.tr("Compute the map"),
            tooltip=self.tr(
                "Run the model over the Data page's images and place each one by its features: "
                "similar images end up close together"),
            on_click=self._on_compute_button_clicked,
        )
        self._method = QComboBox(self)
        self._method.setObjectName("mapMethodComboBox")
        self._method.setAccessibleName(self.tr("How the features are projected to 2D"))
        self._method.addItem(self.tr("t-SNE"), "tsne")
        self._method.addItem(self.tr("PCA (fast)"), "pca")
        self._method.setToolTip(self.tr(
            "t-SNE keeps neighbours together (clusters show); PCA shows the two main directions of the features"))
        self._stop_button = push_button(
            self, self.tr("Stop"), name="stopMapButton", accessible=self.tr("Stop computing the map"), on_click=self.stop,
        )
        self._progress = ProgressBar(self)
        self._progress.setObjectName("mapProgressBar")
        self._progress.setAccessibleName(self.tr("Map progress"))
        self._progress.setMaximumWidth(160)
        self._progress.hide()
        self._status = QLabel(self)
        self._status.setObjectName("mapStatusLabel")
        self._status.setWordWrap(True)
        self._status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self._lasso_button = push_button(
            self, self.tr("Lasso"), name="lassoButton", accessible=self.tr("Lasso: draw around points to pick them"),
            tooltip=self.tr("Draw around points to pick them (or drag with Shift held)"),
        )
        self._lasso_button.setCheckable(True)
        self._lasso_button.toggled.connect(self._on_lasso_button_toggled)
        self._clear_selection_button = push_button(
            self, self.tr("Clear selection"), name="clearSelectionButton", accessible=self.tr("Clear the picked points"),
            on_click=self.clear_selection,
        )
        self._relabel_button = push_button(
            self, self.tr("Relabel selected as ▸"), name="relabelSelectedButton",
            accessible=self.tr("Relabel the picked images"),
            tooltip=self.tr("Move the picked images to the class on the right "
                            "(queued on the Check labels page)"),
            on_click=self._on_relabel_button_clicked,
        )
        self._relabel_class = QComboBox(self)
        self._relabel_class.setObjectName("relabelClassComboBox")
        self._relabel_class.setAccessibleName(self.tr("Class to move the picked images to"))
        self._relabel_class.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self._relabel_class.setMaximumWidth(220)
        self._selection_label = QLabel(self)
        self._selection_label.setObjectName("mapSelectionLabel")

        self._view_box = _LassoViewBox()
        self._view_box.lassoDrawn.connect(self._on_view_box_lassoDrawn)
        self._plot = pg.PlotWidget(self, viewBox=self._view_box)
        self._plot.setObjectName("mapPlot")
        self._plot.setAccessibleName(self.tr("Map: one point per image"))
        self._plot.hideAxis("left")
        self._plot.hideAxis("bottom")
        self._plot.setMenuEnabled(False)
        self._plot.setMinimumSize(240, 200)
        self._legend = self._plot.addLegend(offset=(8, 8), labelTextSize="9pt")
        self._rings = pg.ScatterPlotItem(pxMode=True, size=_RING_PX, brush=None, symbol="o")
        self._rings.setZValue(2)
        self._highlight = pg.ScatterPlotItem(pxMode=True, size=_POINT_PX + 6, symbol="o")
        self._highlight.setZValue(3)
        self._plot.addItem(self._rings)
        self._plot.addItem(self._highlight)
        scene = self._plot.scene()
        scene.sigMouseMoved.connect(self._on_scene_sigMouseMoved)
        scene.sigMouseClicked.connect(self._on_scene_sigMouseClicked)

        self._preview = QLabel(self)
        self._preview.setObjectName("mapPreviewLabel")
        self._preview.setFixedSize(_PREVIEW_PX, _PREVIEW_PX)
        self._preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._preview_text = QLabel(self)
        self._preview_text.setObjectName("mapPreviewText")
        self._preview_text.setWordWrap(True)
        self._preview_text.setFixedWidth(_PREVIEW_PX)
        self._preview_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        side = QVBoxLayout()
        side.addWidget(self._preview)
        side.addWidget(self._preview_text)
        side.addStretch(1)

        top = QHBoxLayout()
        top.addWidget(self._compute_button)
        top.addWidget(self._method)
        top.addWidget(self._stop_button)
        top.addWidget(self._progress)
        top.addWidget(self._status, 1)
        selection = QHBoxLayout()
        selection.addWidget(self._lasso_button)
        selection.addWidget(self._clear_selection_button)
        selection.addWidget(self._relabel_button)
        selection.addWidget(self._relabel_class)
        selection.addWidget(self._selection_label, 1)
        body = QHBoxLayout()
        body.addWidget(self._plot, 1)
        body.addLayout(side)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        layout.addLayout(top)
        layout.addLayout(selection)
        layout.addLayout(body, 1)
        self._apply_theme()

    # -- public API -------------------------------------------------------------------------

    def set_model(self, loaded: Any) -> None:
        """Use ``loaded`` (a ``LoadedModel``) for the next map, or nothing (``None``)."""
        self._loaded = loaded
        self._update_controls()

    def set_dataset(self, dataset: Any) -> None:
        """Map the images of ``dataset`` (a ``DatasetInfo``) next; the shown map stays until then."""
        self._dataset = dataset
        self._update_controls()

    def has_model(self) -> bool:
        return self._loaded is not None and not getattr(self._loaded, "structure_only", False)

    def is_running(self) -> bool:
        return self._runner is not None and self._runner.is_running()

    def method(self) -> str:
        return str(self._method.currentData())

    def set_method(self, method: str) -> None:
        self._method.setCurrentIndex(max(0, self._method.findData(method)))

    def compute(self, config: EmbeddingConfig | None = None) -> bool:
        """Start the map of the dataset with the model (``config`` defaults to the method
        chosen on the page); False when there is nothing to map or a map is being computed."""
        if not self.has_model() or self._dataset is None or self.is_running():
            return False
        config = config or EmbeddingConfig(method=self.method())  # type: ignore[arg-type]
        loaded, dataset = self._loaded, self._dataset

        def factory(stop: threading.Event) -> Iterator[object]:
            return compute_embedding(loaded, dataset, config, stop=stop)

        if self.model_lease is not None:
            factory = leased(self.model_lease, "map", factory)
        runner = GeneratorRunner(factory, stop_grace_s=0.0)
        runner.eventEmitted.connect(self._on_runner_eventEmitted)
        runner.failed.connect(self._on_runner_failed)
        runner.finished.connect(self._on_runner_finished)
        self._runner = runner
        self._notes, self._ended = [], False
        self._progress.setRange(0, 0)
        self._progress.show()
        self._status.setText(self.tr("Waiting for the model…"))
        runner.start()
        self._update_controls()
        return True

    def stop(self) -> None:
        """Ask the running map to stop; the map shown before stays."""
        if self._runner is not None:
            self._runner.request_stop()

    def set_map(self, info: EmbeddingInfo) -> None:
        """Show ``info``: one scatter item per class, rings on the misclassified images."""
        self._info = info
        self._selected = np.zeros(len(info), dtype=bool)
        self._hovered = None
        for item in self._class_items:
            self._plot.removeItem(item)
        self._legend.clear()
        self._class_items = []
        x, y = info.coordinates[:, 0], info.coordinates[:, 1]
        for index, (name, colour) in enumerate(zip(info.class_names, class_colours(len(info.class_names)))):
            members = info.labels == index
            item = pg.ScatterPlotItem(x=x[members], y=y[members], pxMode=True, size=_POINT_PX, symbol="o",
                                      pen=None, brush=pg.mkBrush(*colour, 220), name=name)
            self._plot.addItem(item)
            self._class_items.append(item)
        wrong = info.misclassified
        self._rings.setData(x=x[wrong], y=y[wrong])
        if wrong.any():
            self._legend.addItem(self._rings, self.tr("misclassified"))
        self._highlight.setData(x=[], y=[])
        self._relabel_class.clear()
        self._relabel_class.addItems(list(info.class_names))
        self._view_box.autoRange(padding=0.05)
        self._show_preview(None)
        self._update_controls()
        self.selectionChanged.emit(0)

    def map_info(self) -> EmbeddingInfo | None:
        return self._info

    def point_count(self) -> int:
        """Points drawn (every class item together)."""
        return sum(len(item.data) for item in self._class_items)

    def point_position(self, index: int) -> QPointF:
        """Where point ``index`` is drawn, in the plot widget's viewport pixels (for tests)."""
        x, y = self._info.coordinates[index]  # type: ignore[union-attr]
        scene = self._view_box.mapViewToScene(QPointF(float(x), float(y)))
        return self._plot.mapFromScene(scene).toPointF()

    def plot_viewport(self) -> QWidget:
        return self._plot.viewport()

    def set_lasso_mode(self, on: bool) -> None:
        self._lasso_button.setChecked(on)

    def select_polygon(self, outline: np.ndarray | Sequence[Sequence[float]], *, add: bool = False) -> int:
        """Pick the points inside ``outline`` (data coordinates), or add them to the picked
        ones; returns how many are picked now."""
        if self._info is None:
            return 0
        inside = points_in_polygon(self._info.coordinates, np.asarray(outline, dtype=np.float64))
        self._set_selection(inside | self._selected if add else inside)
        return int(self._selected.sum())

    def clear_selection(self) -> None:
        if self._info is not None:
            self._set_selection(np.zeros(len(self._info), dtype=bool))

    def selected_paths(self) -> list[str]:
        if self._info is None:
            return []
        return [self._info.paths[i] for i in np.flatnonzero(self._selected)]

    def set_relabel_class(self, name: str) -> None:
        self._relabel_class.setCurrentIndex(self._relabel_class.findText(name))

    def relabel_selected(self) -> bool:
        """Emit ``relabelRequested`` for the picked images and the chosen class."""
        paths, target = self.selected_paths(), self._relabel_class.currentText()
        if not paths or not target:
            return False
        self.relabelRequested.emit(paths, target)
        self._status.setText(self.tr("Asked to move %n image(s) to {name}", "", len(paths)).format(name=target))
        return True

    def status_text(self) -> str:
        return self._status.text()

    def preview(self) -> tuple[str, bool]:
        """What the preview beside the map shows: its text, and whether the thumbnail is in."""
        pixmap = self._preview.pixmap()
        return self._preview_text.text(), pixmap is not None and not pixmap.isNull()

    def view_range(self) -> list[list[float]]:
        return self._view_box.viewRange()

    def hovered_path(self) -> str | None:
        return None if self._hovered is None or self._info is None else self._info.paths[self._hovered]

    def point_at(self, pos: QPointF) -> int | None:
        """The point within :data:`_PICK_PX` pixels of ``pos`` (viewport pixels), nearest first."""
        if self._info is None or not len(self._info):
            return None
        view = self._view_box.mapSceneToView(self._plot.mapToScene(pos.toPoint()))
        width, height = self._view_box.viewPixelSize()
        if width <= 0 or height <= 0:
            return None
        offsets = (self._info.coordinates - (view.x(), view.y())) / (width, height)
        distances = np.einsum("ij,ij->i", offsets, offsets)
        nearest = int(np.argmin(distances))
        return nearest if distances[nearest] <= _PICK_PX**2 else None

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop the map job and the thumbnail loader and wait for them (window close)."""
        ok = True
        if self._runner is not None:
            self._runner.request_stop()
            ok = self._runner.wait(timeout_ms)
        return self._thumbnails.close(timeout_ms) and ok

    # -- helpers ----------------------------------------------------------------------------

    def _set_selection(self, selected: np.ndarray) -> None:
        self._selected = selected
        points = self._info.coordinates[selected]  # type: ignore[union-attr]
        self._highlight.setData(x=points[:, 0], y=points[:, 1])
        self._update_controls()
        self.selectionChanged.emit(int(selected.sum()))

    def _show_preview(self, index: int | None) -> None:
        self._hovered = index
        if index is None or self._info is None:
            self._preview.clear()
            self._preview_text.setText(self.tr("Point at a dot to see its image; click to open it.")
                                       if self._info is not None else "")
            return
        info = self._info
        path = info.paths[index]
        text = f"<b>{os.path.basename(path)}</b><br>" + self.tr("folder: {name}").format(
            name=info.class_names[int(info.labels[index])])
        if info.predicted is not None:
            text += "<br>" + self.tr("model: {name}").format(name=info.class_names[int(info.predicted[index])])
        self._preview_text.setText(text)
        self._preview.clear()
        self._thumbnails.load([path])  # a cached one arrives at once

    def _update_controls(self) -> None:
        running = self.is_running()
        self._compute_button.setEnabled(self.has_model() and self._dataset is not None and not running)
        self._method.setEnabled(not running)
        self._stop_button.setEnabled(running)
        picked = int(self._selected.sum())
        self._relabel_button.setEnabled(picked > 0 and self._relabel_class.count() > 0)
        self._relabel_class.setEnabled(self._relabel_class.count() > 0)
        self._clear_selection_button.setEnabled(picked > 0)
        self._lasso_button.setEnabled(self._info is not None)
        self._selection_label.setText(self.tr("%n picked", "", picked) if picked else "")
        if running:
            return
        if self._info is not None:
            return  # the status says what the last job did
        if self._loaded is None:
            text = self.tr("Load a model on the Model page, then compute the map.")
        elif not self.has_model():
            text = self.tr("The model was loaded without weights; load it with weights to draw a map.")
        elif self._dataset is None:
            text = self.tr("Choose an image folder on the Data page, then compute the map.")
        else:
            text = self.tr("Compute the map to see how the model places the {count} images.").format(
                count=f"{len(self._dataset.samples):,}")
        self._status.setText(text)

    def _apply_theme(self) -> None:
        palette = self.palette()
        background = palette.color(QPalette.ColorRole.Base)
        dark = background.lightness() < 128
        self._plot.setBackground(background)
        ring = QColor("#f5f5f5") if dark else QColor("#202020")
        self._rings.setPen(pg.mkPen(ring, width=1.5))
        picked = palette.color(QPalette.ColorRole.Highlight)
        self._highlight.setPen(pg.mkPen(picked, width=2.5))
        picked.setAlpha(110)
        self._highlight.setBrush(pg.mkBrush(picked))
        self._legend.setLabelTextColor(palette.color(QPalette.ColorRole.Text))
        legend = QColor(background)
        legend.setAlpha(200)
        self._legend.setBrush(pg.mkBrush(legend))

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._apply_theme()
        super().changeEvent(event)

    # -- slots ------------------------------------------------------------------------------

    @Slot()
    def _on_compute_button_clicked(self) -> None:
        self.compute()

    @Slot(bool)
    def _on_lasso_button_toggled(self, checked: bool) -> None:
        self._view_box.lasso_mode = checked

    @Slot()
    def _on_relabel_button_clicked(self) -> None:
        self.relabel_selected()

    @Slot(object)
    def _on_view_box_lassoDrawn(self, outline: object) -> None:
        self.select_polygon(outline)  # type: ignore[arg-type]

    @Slot(object)
    def _on_scene_sigMouseMoved(self, scene_pos: object) -> None:
        index = self.point_at(self._plot.mapFromScene(scene_pos).toPointF())  # type: ignore[arg-type]
        if index != self._hovered:
            self._show_preview(index)

    @Slot(object)
    def _on_scene_sigMouseClicked(self, event: Any) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self._info is None:
            return
        index = self.point_at(self._plot.mapFromScene(event.scenePos()).toPointF())
        if index is not None:
            self.imageActivated.emit(self._info.paths[index])

    @Slot(object)
    def _on_thumbnails_thumbnailsReady(self, items: object) -> None:
        path = self.hovered_path()
        for item in items:  # type: ignore[attr-defined]
            if item.path == path and item.image is not None:
                self._preview.setPixmap(fit_pixmap(item.image, _PREVIEW_PX))

    @Slot(object)
    def _on_runner_eventEmitted(self, event: object) -> None:
        if self.sender() is not self._runner:
            return
        if isinstance(event, EmbeddingStarted):
            self._status.setText(self.tr("Mapping %n image(s) on {device}…", "", event.images).format(
                device=event.device))
        elif isinstance(event, Progress):
            self._progress.setRange(0, max(event.total, 1))
            self._progress.setValue(event.done)
            text = self._stage_text.get(event.stage, event.stage)
            text += f" {event.done:,}/{event.total:,}" if event.total > 1 else "…"
            if event.eta_seconds is not None and event.done < event.total:
                text += " · " + self.tr("about {time} left").format(time=format_duration(event.eta_seconds))
            self._status.setText(text)
        elif isinstance(event, Note):
            self._notes.append(event.message)
        elif isinstance(event, EmbeddingFinished):
            self._ended = True
            if event.info is not None:
                self.set_map(event.info)
                self._status.setText(" · ".join([event.message[0].upper() + event.message[1:], *self._notes]))
                self.mapReady.emit()
            elif event.reason == "stopped":
                self._status.setText(self.tr("Stopped; the map was not changed."))
            else:
                self._status.setText(self.tr("The map failed: {message}").format(message=event.message))

    @Slot(str)
    def _on_runner_failed(self, message: str) -> None:
        if self.sender() is self._runner:
            self._status.setText(self.tr("The map failed: {message}").format(message=message))

    @Slot()
    def _on_runner_finished(self) -> None:
        if self.sender() is not self._runner:
            return
        self._runner = None
        self._progress.hide()
        # The job's last word stays (stopped while it waited for the model: it said nothing).
        message = self._status.text() if self._ended else self.tr("Stopped; the map was not changed.")
        self._update_controls()
        self._status.setText(message)
