""""Try it": drop images on the model and see what it predicts.

Predictions come from ``core.predict.predict_images`` — the same preprocessing and class names
as training's validation — run on a worker thread in small chunks, so the first results show
while the rest are computed. Each image is listed with its thumbnail beside its top-k classes
as probability bars. A file that cannot be read gets its own error row; the others go on.
A top class below core's "not sure" threshold is shown as a guess, not as the answer, and the
list can be saved as the same CSV that ``headswap predict --csv`` writes.

The Heatmap toggle draws, over each thumbnail, where the model looks for the row's top class
(or for a class picked beside the toggle): the controls and the job are ``heatmaps.py``'s,
shared with the Results page; here the heatmaps wait for the predictions, so only one job at a
time reads the model even without the window's lease.
"""

from __future__ import annotations

import html
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QCoreApplication,
    QEvent,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
    QUrl,
    Signal,
    Slot,
)
from PySide6.QtGui import (
    QColor,
    QDesktopServices,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QFont,
    QFontMetrics,
    QImage,
    QPainter,
    QPalette,
    QPen,
    QPixmap,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListView,
    QSpinBox,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from headswap_gui.core.errors import HeadswapError
from headswap_gui.core.images import IMAGE_EXTENSIONS, is_image_file
from headswap_gui.core.predict import Prediction, predict_images, write_predictions_csv
from headswap_gui.gui.buttons import push_button
from headswap_gui.gui.heatmaps import HeatmapController
from headswap_gui.gui.jobs import ModelLease
from headswap_gui.gui.progress_bar import ProgressBar
from headswap_gui.gui.thumbnails import Thumbnail, ThumbnailLoader, fit_pixmap, placeholder_pixmap
from headswap_gui.gui.worker import GeneratorRunner, start_runner

__all__ = ["TryPanel", "prediction_events"]

_THUMB = 96
_CHUNK = 8
_PATH_ROLE = int(Qt.ItemDataRole.UserRole) + 1
_PREDICTION_ROLE = int(Qt.ItemDataRole.UserRole) + 2
_ERROR_ROLE = int(Qt.ItemDataRole.UserRole) + 3


def prediction_events(
    loaded: Any, paths: Sequence[str], top_k: int, stop: threading.Event
) -> Iterator[list[tuple[str, Prediction | None, str | None]]]:
    """Predict ``paths`` in chunks; yield ``[(path, prediction, None) | (path, None, error)]``
    (an unreadable file only costs its own row: ``predict_images`` reports it per file)."""
    for start in range(0, len(paths), _CHUNK):
        if stop.is_set():
            return
        chunk = list(paths[start : start + _CHUNK])
        yield [
            (path, prediction, None) if prediction.error is None else (path, None, prediction.error)
            for path, prediction in zip(chunk, predict_images(loaded, chunk, top_k=top_k))
        ]


def _not_sure_text(prediction: Prediction) -> str | None:
    """"Not sure — maybe cat (41%)" when the top class is below core's threshold, else None:
    softmax always names a class, and a new user reads a bare top label as the answer."""
    if not prediction.not_sure():
        return None
    return QCoreApplication.translate("TryPanel", "Not sure — maybe {label} ({probability})").format(
        label=prediction.labels[0], probability=f"{prediction.probabilities[0]:.0%}"
    )


class _PredictionListModel(QAbstractListModel):
    """One row per image: path, thumbnail, and its prediction or error (None while pending)."""

    def __init__(self, parent: QWidget, heatmaps: HeatmapController) -> None:
        super().__init__(parent)
        self._widget = parent
        self._heatmaps = heatmaps  # a row's overlay, where it has one, replaces its thumbnail
        self._paths: list[str] = []
        self._rows: dict[str, tuple[Prediction | None, str | None]] = {}
        self._pixmaps: dict[str, QPixmap] = {}
        self._thumbs: dict[str, Thumbnail] = {}
        self._overlay_pixmaps: dict[str, QPixmap] = {}

    def paths(self) -> list[str]:
        return list(self._paths)

    def add_paths(self, paths: Sequence[str]) -> list[str]:
        new = [p for p in dict.fromkeys(paths) if p not in self._rows]
        if new:
            first = len(self._paths)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            self._paths.extend(new)
            for path in new:
                self._rows[path] = (None, None)
            self.endInsertRows()
        return new

    def clear(self) -> None:
        self.beginResetModel()
        self._paths, self._rows, self._pixmaps, self._thumbs = [], {}, {}, {}
        self._overlay_pixmaps = {}
        self.endResetModel()

    def forget_predictions(self) -> None:
        for path in self._paths:
            self._rows[path] = (None, None)
        self._changed(range(len(self._paths)))

    def set_rows(self, results: Iterable[tuple[str, Prediction | None, str | None]]) -> None:
        changed = []
        for path, prediction, error in results:
            if path in self._rows:
                self._rows[path] = (prediction, error)
                changed.append(self._paths.index(path))
        self._changed(changed)

    def set_thumbnails(self, items: Iterable[Thumbnail]) -> None:
        changed = []
        for item in items:
            if item.path in self._rows:
                self._thumbs[item.path] = item
                self._pixmaps.pop(item.path, None)
                changed.append(self._paths.index(item.path))
        self._changed(changed)

    def overlays_changed(self, paths: Iterable[str]) -> None:
        changed = []
        for path in paths:
            if path in self._rows:
                self._overlay_pixmaps.pop(path, None)
                changed.append(self._paths.index(path))
        self._changed(changed)

    def prediction_count(self) -> int:
        return sum(1 for prediction, _ in self._rows.values() if prediction is not None)

    def error_count(self) -> int:
        return sum(1 for _, error in self._rows.values() if error is not None)

    def thumbnail_count(self) -> int:
        return sum(1 for t in self._thumbs.values() if t.image is not None)

    def prediction(self, path: str) -> Prediction | None:
        return self._rows.get(path, (None, None))[0]

    def error(self, path: str) -> str | None:
        return self._rows.get(path, (None, None))[1]

    def finished(self) -> list[Prediction]:
        """Every row that has its prediction or error, in list order (pending rows are left out)."""
        rows = [(path, *self._rows[path]) for path in self._paths]
        return [
            prediction if prediction is not None else Prediction(path, (), (), error)
            for path, prediction, error in rows
            if prediction is not None or error is not None
        ]

    def palette_changed(self) -> None:
        self._pixmaps.clear()
        self._overlay_pixmaps.clear()
        self._changed(range(len(self._paths)))

    def _changed(self, rows: Iterable[int]) -> None:
        rows = list(rows)
        if rows:
            self.dataChanged.emit(self.index(min(rows)), self.index(max(rows)))

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._paths)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        path = self._paths[index.row()]
        prediction, error = self._rows[path]
        if role == _PATH_ROLE:
            return path
        if role == _PREDICTION_ROLE:
            return prediction
        if role == _ERROR_ROLE:
            return error
        if role == Qt.ItemDataRole.DisplayRole:
            parent = Path(path).parent.name
            return f"{parent}/{Path(path).name}" if parent else Path(path).name
        if role == Qt.ItemDataRole.DecorationRole and (overlay := self._heatmaps.overlay(path)) is not None:
            pixmap = self._overlay_pixmaps.get(path)
            if pixmap is None:
                pixmap = self._overlay_pixmaps[path] = fit_pixmap(overlay, _THUMB)
            return pixmap
        if role == Qt.ItemDataRole.DecorationRole:
            pixmap = self._pixmaps.get(path)
            if pixmap is None:
                thumb = self._thumbs.get(path)
                palette = self._widget.palette()
                if thumb is None or thumb.image is None:
                    pixmap = placeholder_pixmap(_THUMB, palette, broken=thumb is not None)
                else:
                    pixmap = fit_pixmap(thumb.image, _THUMB)
                self._pixmaps[path] = pixmap
            return pixmap
        if role in (Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.AccessibleTextRole):
            if error:
                return f"{path}\n{error}"
            if prediction is None:
                return path
            top = "; ".join(f"{label} {p:.1%}" for label, p in zip(prediction.labels, prediction.probabilities))
            doubt = _not_sure_text(prediction)
            text = f"{path}\n{doubt}\n{top}" if doubt else f"{path}\n{top}"
            heat_label = self._heatmaps.label(path)
            if heat_label is not None:
                text += "\n" + QCoreApplication.translate("TryPanel", "Heatmap: where the model sees {label}").format(
                    label=heat_label)
            return text
        return None


class _PredictionDelegate(QStyledItemDelegate):
    """Thumbnail on the left; file name, then one probability bar per top-k class."""

    def __init__(self, panel: TryPanel) -> None:
        super().__init__(panel)
        self._panel = panel

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802 - Qt override
        line = option.fontMetrics.height()
        lines = 1 + max(self._panel.top_k(), 1)
        return QSize(320, max(_THUMB + 12, lines * (line + 6) + 10))

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        painter.save()
        palette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(option.rect, palette.color(QPalette.ColorRole.Highlight))
        elif index.row() % 2:
            painter.fillRect(option.rect, palette.color(QPalette.ColorRole.AlternateBase))
        text_color = palette.color(
            QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        )
        rect = option.rect.adjusted(6, 6, -8, -6)
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(pixmap, QPixmap):
            top = rect.top() + (rect.height() - _THUMB) // 2
            painter.drawPixmap(rect.left(), top, pixmap)
        x = rect.left() + _THUMB + 12
        width = rect.right() - x
        fm = QFontMetrics(option.font)
        line = fm.height()
        bold = QFont(option.font)
        bold.setBold(True)
        painter.setFont(bold)
        painter.setPen(text_color)
        y = rect.top()
        error = index.data(_ERROR_ROLE)
        prediction = index.data(_PREDICTION_ROLE)
        doubt = _not_sure_text(prediction) if prediction is not None else None
        name_w = width
        if doubt:  # on the title line, right-aligned, in a warning colour: a guess, not the answer
            italic = QFont(option.font)
            italic.setItalic(True)
            doubt_w = min(QFontMetrics(italic).horizontalAdvance(doubt) + 12, width * 2 // 3)
            name_w = width - doubt_w
            painter.setFont(italic)
            painter.setPen(_doubt_color(palette))
            painter.drawText(
                QRect(x + name_w, y, doubt_w, line),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                QFontMetrics(italic).elidedText(doubt, Qt.TextElideMode.ElideRight, doubt_w),
            )
            painter.setFont(bold)
            painter.setPen(text_color)
        name = QFontMetrics(bold).elidedText(str(index.data()), Qt.TextElideMode.ElideMiddle, name_w)
        painter.drawText(QRect(x, y, name_w, line), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, name)
        y += line + 6
        painter.setFont(option.font)
        if error:
            painter.setPen(QColor(230, 80, 70))
            painter.drawText(
                QRect(x, y, width, rect.bottom() - y),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap,
                self._panel.tr("Could not classify this image: {error}").format(error=error),
            )
        elif prediction is None:
            muted = QColor(text_color)
            muted.setAlpha(150)
            painter.setPen(muted)
            message = (
                self._panel.tr("Predicting…")
                if self._panel.has_model()
                else self._panel.tr("Load a model to see predictions")
            )
            painter.drawText(QRect(x, y, width, line), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, message)
        else:
            area = QRect(x, y, width, rect.bottom() - y)
            self._paint_bars(painter, prediction, area, fm, palette, selected, muted=doubt is not None)
        painter.restore()

    def _paint_bars(
        self, painter: QPainter, prediction: Prediction, area: QRect, fm: QFontMetrics, palette: QPalette,
        selected: bool, muted: bool,
    ) -> None:
        """One bar per class; ``muted`` (not sure) draws them grey, so no bar looks like a verdict."""
        line = fm.height()
        percent_w = fm.horizontalAdvance("100.0%") + 6
        label_w = min(max(area.width() * 0.4, 80), 260)
        bar_x = area.left() + int(label_w) + 8
        bar_w = max(area.right() - percent_w - bar_x, 20)
        base = palette.color(QPalette.ColorRole.Base)
        dark = base.lightness() < 128
        accent = QColor("#64b5f6") if dark else QColor("#1976d2")
        if muted:
            accent = QColor(palette.color(QPalette.ColorRole.Text))
            accent.setAlpha(110)
        track = QColor(palette.color(QPalette.ColorRole.Text))
        track.setAlpha(28)
        text_color = palette.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text)
        y = area.top()
        for rank, (label, probability) in enumerate(zip(prediction.labels, prediction.probabilities)):
            row = QRect(area.left(), y, area.width(), line)
            painter.setPen(text_color)
            painter.drawText(
                QRect(area.left(), y, int(label_w), line),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                fm.elidedText(label, Qt.TextElideMode.ElideRight, int(label_w)),
            )
            bar = QRect(bar_x, row.top() + 3, bar_w, line - 6)
            painter.fillRect(bar, track)
            fill = QColor(accent)
            if rank:
                fill.setAlpha(fill.alpha() * 150 // 255)
            filled = QRect(bar.left(), bar.top(), max(1, round(bar.width() * min(max(probability, 0.0), 1.0))), bar.height())
            painter.fillRect(filled, fill)
            painter.drawText(
                QRect(bar.right() + 6, y, percent_w, line),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                f"{probability:.1%}",
            )
            y += line + 6


def _doubt_color(palette: QPalette) -> QColor:
    """Amber, readable on the light and the dark theme."""
    return QColor("#ffb74d") if palette.color(QPalette.ColorRole.Base).lightness() < 128 else QColor("#a15c00")


class TryPanel(QWidget):
    """Classify image files with the current model.

    ``predictionsReady()`` is emitted whenever every listed image has its prediction (or
    error). While the window trains, it disables this panel and later calls
    :meth:`set_model` again with the trained model, which re-predicts the listed images.
    """

    predictionsReady = Signal()
    heatmapsReady = Signal()  # every listed image has its heatmap (or the reason it has none)
    imageActivated = Signal(str)  # a double-click or Enter on a row: show the image large

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("tryPanel")
        self.setAccessibleName(self.tr("Try the model on images"))
        self.setAcceptDrops(True)
        self._loaded: Any = None
        self._structure_only = False
        self._head_is_new = False  # the head was swapped in here and not trained since
        self._runner: GeneratorRunner | None = None
        self._pending: list[str] = []
        self._drag_active = False

        self._thumbnails = ThumbnailLoader(size=2 * _THUMB, parent=self)
        self._heatmaps = HeatmapController(self, self._thumbnails.size(), may_start=self._predictions_done)
        self._heatmaps.overlaysChanged.connect(self._on_heatmaps_overlaysChanged)
        self._heatmaps.runningChanged.connect(self._on_heatmaps_runningChanged)
        self._heatmaps.heatmapsReady.connect(self.heatmapsReady)
        self._model = _PredictionListModel(self, self._heatmaps)
        self._thumbnails.thumbnailsReady.connect(self._on_thumbnails_thumbnailsReady)
        self._build()
        self._update_status()

    # -- construction -----------------------------------------------------------------------

    def _build(self) -> None:
        self._add_button = push_button(
            self, self.tr("Add images…"), name="addImagesButton", accessible=self.tr("Add images to classify"),
            on_click=self._on_add_button_clicked,
        )
        self._clear_button = push_button(
            self, self.tr("Clear"), name="clearImagesButton", accessible=self.tr("Remove all images"),
            on_click=self._on_clear_button_clicked,
        )
        self._save_button = push_button(
            self, self.tr("Save as CSV…"), name="savePredictionsButton",
            accessible=self.tr("Save the predictions as a CSV file"),
            tooltip=self.tr(
                "One row per image: its top classes, probabilities, whether the model is not sure, and errors"
            ),
            on_click=self._on_save_button_clicked,
        )
        self._top_k = QSpinBox(self)
        self._top_k.setObjectName("topKSpinBox")
        self._top_k.setAccessibleName(self.tr("Number of classes shown per image"))
        self._top_k.setRange(1, 10)
        self._top_k.setValue(3)
        self._top_k.setPrefix(self.tr("top "))
        self._top_k.setToolTip(self.tr("How many of the most probable classes to show per image"))
        self._top_k.valueChanged.connect(self._on_top_k_valueChanged)
        self._busy = ProgressBar(self)
        self._busy.setObjectName("predictionProgressBar")
        self._busy.setAccessibleName(self.tr("Prediction progress"))
        self._busy.setMaximumWidth(160)
        self._busy.hide()
        self._status = QLabel(self)
        self._status.setObjectName("tryStatusLabel")
        self._status.setWordWrap(True)
        self._status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._saved = QLabel(self)  # where the CSV went (with a link to its folder), or why it did not
        self._saved.setObjectName("csvSavedLabel")
        self._saved.setAccessibleName(self.tr("Where the predictions were saved"))  # its link takes focus
        self._saved.setWordWrap(True)
        self._saved.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self._saved.linkActivated.connect(self._on_saved_linkActivated)
        self._saved.hide()

        top = QHBoxLayout()
        top.addWidget(self._add_button)
        top.addWidget(self._clear_button)
        top.addWidget(self._save_button)
        top.addWidget(self._top_k)
        top.addWidget(self._status, 1)
        top.addWidget(self._busy)

        self._view = QListView(self)
        self._view.setObjectName("predictionList")
        self._view.setAccessibleName(self.tr("Images and their predictions"))
        self._view.setModel(self._model)
        self._view.setItemDelegate(_PredictionDelegate(self))
        self._view.setUniformItemSizes(True)
        self._view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self._view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self._view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._view.activated.connect(self._on_view_activated)

        extensions = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
        self._empty = QLabel(
            self.tr(
                "<p style='font-size:14pt'>Drop image files here, or click <b>Add images…</b></p>"
                "<p>Each image is shown with the classes the model finds most likely. "
                "Readable formats: {extensions}.</p>"
            ).format(extensions=extensions),
            self,
        )
        self._empty.setObjectName("tryEmptyLabel")
        self._empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._empty.setWordWrap(True)
        self._empty.setMargin(24)

        self._stack = QStackedWidget(self)
        self._stack.addWidget(self._empty)
        self._stack.addWidget(self._view)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        layout.addLayout(top)
        layout.addWidget(self._heatmaps.view)
        layout.addWidget(self._saved)
        layout.addWidget(self._stack, 1)

    # -- public API -------------------------------------------------------------------------

    @property
    def model_lease(self) -> ModelLease | None:
        """The window's lease: predictions and heatmaps wait their turn on the model."""
        return self._heatmaps.model_lease

    @model_lease.setter
    def model_lease(self, lease: ModelLease | None) -> None:
        self._heatmaps.model_lease = lease

    def set_model(self, loaded: Any) -> None:
        """Use ``loaded`` (a ``LoadedModel``) for predictions, or nothing (``None``).

        Listed images are predicted (and, with the toggle on, explained) again with the new model.
        """
        self._loaded = loaded
        self._structure_only = bool(getattr(loaded, "structure_only", False))
        self._restart_all()
        self._heatmaps.set_model(loaded)
        self._update_status()

    def set_head_is_new(self, new: bool) -> None:
        """Say, above the predictions, that the head has random weights (swapped, not trained)."""
        self._head_is_new = new
        self._update_status()

    def has_model(self) -> bool:
        # Read once in set_model, not from the live model: a worker's traced pass (finding the
        # heatmap layer) swaps meta tensors into it for a moment, and this runs on every paint.
        return self._loaded is not None and not self._structure_only

    def add_images(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        """List image files (folders add the images directly inside them) and predict them."""
        files = _expand(paths)
        new = self._model.add_paths(files)
        if not new:
            return
        self._stack.setCurrentIndex(1)
        self._thumbnails.load(new)
        self._pending.extend(new)
        self._start_next()
        self._heatmaps.set_shown(self._model.paths())
        self._update_status()

    def choose_images(self) -> None:
        paths = self.ask_images(self)
        if paths:
            self.add_images(paths)

    @classmethod
    def ask_images(cls, parent: QWidget | None) -> list[str]:
        """The file dialog; tests monkeypatch this."""
        patterns = " ".join(f"*{ext}" for ext in sorted(IMAGE_EXTENSIONS))
        paths, _ = QFileDialog.getOpenFileNames(
            parent, parent.tr("Choose images") if parent else "Choose images", "",
            f"Images ({patterns});;All files (*)",
        )
        return list(paths)

    def save_csv(self) -> None:
        """Ask for a file and write the listed predictions (and errors) there as core's CSV,
        then say on the page where it went."""
        rows = self._model.finished()
        if not rows:
            return
        path = self.ask_csv_path(self, os.path.join(os.path.dirname(rows[0].image), "predictions.csv"))
        if not path:
            return
        try:
            write_predictions_csv(path, rows)
        except HeadswapError as error:
            text = self.tr("Could not save the predictions: {error}").format(error=html.escape(str(error)))
            self._saved.setText(f"<span style='color:#e65046'>{text}</span>")
        else:
            folder = QUrl.fromLocalFile(os.path.dirname(os.path.abspath(path))).toString()
            self._saved.setText(
                self.tr("Saved the predictions for %n image(s) to <b>{path}</b> · <a href='{folder}'>Open folder</a>",
                        "", len(rows))
                .format(path=html.escape(os.path.abspath(path)), folder=html.escape(folder, quote=True))
            )
        self._saved.show()

    @classmethod
    def ask_csv_path(cls, parent: QWidget, suggested: str) -> str:
        """The save dialog (it asks before replacing a file and adds ``.csv``); tests monkeypatch this."""
        dialog = QFileDialog(
            parent, parent.tr("Save predictions as CSV"), os.path.dirname(suggested), parent.tr("CSV files (*.csv)")
        )
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setDefaultSuffix("csv")
        dialog.selectFile(suggested)
        return dialog.selectedFiles()[0] if dialog.exec() else ""

    def clear(self) -> None:
        self._cancel()
        self._pending = []
        self._heatmaps.set_shown([])
        self._saved.hide()
        self._model.clear()
        self._stack.setCurrentIndex(0)
        self._update_status()

    @Slot(QModelIndex)
    def _on_view_activated(self, index: QModelIndex) -> None:
        path = index.data(_PATH_ROLE)
        if path:
            self.imageActivated.emit(str(path))

    def image_paths(self) -> list[str]:
        return self._model.paths()

    def prediction_count(self) -> int:
        """Images that have their prediction."""
        return self._model.prediction_count()

    def error_count(self) -> int:
        return self._model.error_count()

    def prediction_for(self, path: str | os.PathLike[str]) -> Prediction | None:
        return self._model.prediction(os.fspath(path))

    def error_for(self, path: str | os.PathLike[str]) -> str | None:
        return self._model.error(os.fspath(path))

    def thumbnail_count(self) -> int:
        return self._model.thumbnail_count()

    def top_k(self) -> int:
        return self._top_k.value()

    def set_top_k(self, k: int) -> None:
        self._top_k.setValue(k)

    def is_busy(self) -> bool:
        return (
            (self._runner is not None and self._runner.is_running())
            or self._heatmaps.is_running()
            or self._thumbnails.is_busy()
        )

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        self._pending = []
        self._thumbnails.cancel()
        if self._runner is not None:
            self._runner.request_stop()
        ok = self._heatmaps.shutdown(timeout_ms)
        if self._runner is not None:
            ok = self._runner.wait(timeout_ms) and ok
        return self._thumbnails.close(timeout_ms) and ok

    # -- heatmaps ---------------------------------------------------------------------------

    def heatmap_enabled(self) -> bool:
        return self._heatmaps.is_enabled()

    def set_heatmap_enabled(self, enabled: bool) -> None:
        self._heatmaps.set_enabled(enabled)

    def heatmap_class(self) -> str | None:
        """The class heatmaps are drawn for; None: each image's predicted class."""
        return self._heatmaps.target()

    def set_heatmap_class(self, name: str | None) -> None:
        self._heatmaps.set_target(name)

    def heatmap_opacity(self) -> float:
        return self._heatmaps.opacity()

    def set_heatmap_opacity(self, opacity: float) -> None:
        self._heatmaps.set_opacity(opacity)

    def heatmap_count(self) -> int:
        """Images whose thumbnail has its heatmap."""
        return self._heatmaps.count()

    def heatmap_label(self, path: str | os.PathLike[str]) -> str | None:
        """The class the heatmap of ``path`` is drawn for (None: no heatmap)."""
        return self._heatmaps.label(os.fspath(path))

    def heatmap_error(self, path: str | os.PathLike[str]) -> str | None:
        return self._heatmaps.error(os.fspath(path))

    def heatmap_problem(self) -> str | None:
        """Why the current model has no heatmaps at all (e.g. no spatial layer), or None."""
        return self._heatmaps.problem()

    def thumbnail_image(self, path: str | os.PathLike[str]) -> QImage | None:
        """What the row of ``path`` shows as its thumbnail now (for tests and screenshots)."""
        for row, listed in enumerate(self._model.paths()):
            if listed == os.fspath(path):
                pixmap = self._model.index(row).data(Qt.ItemDataRole.DecorationRole)
                return pixmap.toImage() if isinstance(pixmap, QPixmap) else None
        return None

    def _predictions_done(self) -> bool:
        """Whether the heatmaps may start: predictions go first, one job on the model at a time."""
        return not (self._runner is not None and self._runner.is_running()) and not self._pending

    # -- jobs -------------------------------------------------------------------------------

    def _restart_all(self) -> None:
        self._cancel()
        self._saved.hide()  # the saved file no longer matches what the page will show
        self._model.forget_predictions()
        self._pending = self._model.paths()
        self._start_next()

    def _cancel(self) -> None:
        if self._runner is not None:
            self._runner.request_stop()  # its late results are ignored (sender check)

    def _start_next(self) -> None:
        if not self.has_model() or not self._pending:
            self._busy.hide()
            return
        if self._runner is not None and self._runner.is_running():
            return  # picked up when the current job finishes
        if self._heatmaps.is_running():
            return  # one job on the model at a time, even without the window's lease: after the heatmaps
        paths, self._pending = self._pending, []
        loaded, k = self._loaded, self._top_k.value()
        factory: Callable[[threading.Event], Iterator[Any]] = lambda stop: prediction_events(loaded, paths, k, stop)  # noqa: E731
        self._busy.setRange(0, len(self._model.paths()))
        self._busy.setValue(self._done_count())
        self._busy.show()
        self._runner = start_runner(
            factory, self._on_runner_eventEmitted, self._on_runner_failed, self._on_runner_finished,
            lease=self.model_lease, lease_as="predict",
        )

    def _done_count(self) -> int:
        return self._model.prediction_count() + self._model.error_count()

    def _update_status(self) -> None:
        if self._loaded is None:
            text = self.tr("No model loaded: load one on the Model page.")
        elif not self.has_model():
            text = self.tr("The model was loaded without weights; load it with weights to predict.")
        else:
            names = getattr(self._loaded, "class_names", None)
            classes = self.tr(", %n classes", "", len(names)) if names else ""
            text = self.tr("Model: {source}{classes}").format(source=getattr(self._loaded, "source", "?"), classes=classes)
            if self._head_is_new:
                text += " · <b>" + self.tr("the new head is untrained: predictions are random until you train it") + "</b>"
        n = len(self._model.paths())
        if n:
            text += " · " + self.tr("%n image(s)", "", n)
            errors = self._model.error_count()
            if errors:
                text += " · " + self.tr("%n could not be read", "", errors)
        self._status.setText(text)
        self._clear_button.setEnabled(n > 0)
        running = self._runner is not None and self._runner.is_running()
        self._save_button.setEnabled(self._model.prediction_count() > 0 and not running)

    # -- slots ------------------------------------------------------------------------------

    @Slot(object)
    def _on_runner_eventEmitted(self, rows: object) -> None:
        runner = self.sender()
        if runner is not self._runner or (isinstance(runner, GeneratorRunner) and runner.stop_requested()):
            return
        self._model.set_rows(rows)  # type: ignore[arg-type]
        self._busy.setValue(self._done_count())

    @Slot(str)
    def _on_runner_failed(self, message: str) -> None:
        if self.sender() is not self._runner:
            return
        self._status.setText(self.tr("Prediction failed: {message}").format(message=message))

    @Slot()
    def _on_runner_finished(self) -> None:
        if self.sender() is not self._runner:
            return
        self._runner = None
        if self._pending and self.has_model():
            self._start_next()
            return
        self._busy.hide()
        self._update_status()
        self.predictionsReady.emit()
        self._heatmaps.resume()  # they waited for the predictions

    @Slot(object)
    def _on_heatmaps_overlaysChanged(self, paths: object) -> None:
        self._model.overlays_changed(paths)  # type: ignore[arg-type]

    @Slot(bool)
    def _on_heatmaps_runningChanged(self, running: bool) -> None:
        if not running and self._pending and self.has_model():
            self._start_next()  # predictions asked for meanwhile; the heatmaps follow them

    @Slot(object)
    def _on_thumbnails_thumbnailsReady(self, items: object) -> None:
        self._model.set_thumbnails(items)  # type: ignore[arg-type]

    @Slot()
    def _on_add_button_clicked(self) -> None:
        self.choose_images()

    @Slot()
    def _on_clear_button_clicked(self) -> None:
        self.clear()

    @Slot()
    def _on_save_button_clicked(self) -> None:
        self.save_csv()

    @Slot(str)
    def _on_saved_linkActivated(self, link: str) -> None:
        QDesktopServices.openUrl(QUrl(link))

    @Slot(int)
    def _on_top_k_valueChanged(self, _value: int) -> None:
        self._view.doItemsLayout()  # row heights depend on k
        if self._model.paths():
            self._restart_all()
            self._update_status()

    # -- drag and drop ----------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if _expand(_local_paths(event.mimeData())):
            event.acceptProposedAction()
            self._drag_active = True
            self.update()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802 - Qt override
        if self._drag_active:
            event.acceptProposedAction()

    def dragLeaveEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt override
        self._drag_active = False
        self.update()
        super().dragLeaveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        self._drag_active = False
        self.update()
        files = _expand(_local_paths(event.mimeData()))
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        self.add_images(files)

    def paintEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt override
        super().paintEvent(event)
        if self._drag_active:
            painter = QPainter(self)
            painter.setPen(QPen(self.palette().color(QPalette.ColorRole.Highlight), 3, Qt.PenStyle.DashLine))
            painter.drawRoundedRect(self.rect().adjusted(2, 2, -2, -2), 6, 6)
            painter.end()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._model.palette_changed()
        super().changeEvent(event)


def _local_paths(mime) -> list[str]:  # noqa: ANN001
    if mime is None or not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile() and url.toLocalFile()]


def _expand(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Image files among ``paths``, with folders replaced by the images directly in them."""
    files: list[str] = []
    for raw in paths:
        path = os.path.abspath(os.fspath(raw))
        if os.path.isdir(path):
            try:
                names = sorted(os.listdir(path))
            except OSError:
                continue
            files += [
                os.path.join(path, name)
                for name in names
                if not name.startswith(".") and is_image_file(name) and os.path.isfile(os.path.join(path, name))
            ]
        elif is_image_file(path) and os.path.isfile(path):
            files.append(path)
    return files
