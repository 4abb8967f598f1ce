"""The results page: how the trained model does on the validation images, class by class.

Everything is computed by ``core.metrics`` from the per-image predictions the evaluation
produced; this module only lays it out: a per-class table (precision, recall, F1, support), a
confusion matrix whose cells list their images when clicked, and a gallery of the validation
images the model got wrong, the most confidently wrong (highest loss) first.

Above the two image lists, the Heatmap row (``heatmaps.py``, the same as on the Try it page)
tints each thumbnail by where the current model looks for the predicted class, or for a class
picked there: to see *why* a cat was taken for a fox. Only the images on screen are explained,
lazily, and a job on images that are no longer shown (another cell, another tab, a scroll) is
stopped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QSize,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QHelpEvent,
    QHideEvent,
    QIcon,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QTableView,
    QTabWidget,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from headswap_gui.core import metrics
from headswap_gui.gui.heatmaps import HeatmapController
from headswap_gui.gui.jobs import ModelLease
from headswap_gui.gui.thumbnails import ThumbnailLoader, fit_pixmap, icon_for

__all__ = ["ConfusionMatrixView", "ResultsPanel"]

_GALLERY_ICON = 80
_LIST_ICON = 64
_GALLERY_GRID_WIDTH = 140
_MAX_THUMBNAILS = 300  # per list; further rows show a placeholder until scrolled into a new cell
_MIN_CELL, _MAX_CELL = 14, 56
_SAMPLE_ROLE = int(Qt.ItemDataRole.UserRole) + 1


# -- per-class metrics table ---------------------------------------------------------------------


class _MetricsModel(QAbstractTableModel):
    """One row per class: name, precision, recall, F1, support. Sortable by any column."""

    HEADERS = ("Class", "Precision", "Recall", "F1", "Support")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: list[tuple[str, float, float, float, int]] = []

    def set_rows(self, rows: list[tuple[str, float, float, float, int]]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def rows(self) -> list[tuple[str, float, float, float, int]]:
        return list(self._rows)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.HEADERS)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        value = self._rows[index.row()][index.column()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return value
            if col == 4:
                return f"{value:,}"
            return f"{value:.3f}"
        if role == Qt.ItemDataRole.TextAlignmentRole and col > 0:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and col == 0:
            return value
        if role == Qt.ItemDataRole.ForegroundRole and col in (1, 2, 3) and value < 0.5:
            return QColor(220, 70, 60)  # weak classes stand out in both palettes
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.tr(self.HEADERS[section])
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return (
                None,
                self.tr("Of the images predicted as this class, the fraction that are"),
                self.tr("Of the images of this class, the fraction the model found"),
                self.tr("Harmonic mean of precision and recall"),
                self.tr("Validation images of this class"),
            )[section]
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self.layoutAboutToBeChanged.emit()
        key = (lambda r: r[0].casefold()) if column == 0 else (lambda r: r[column])
        self._rows.sort(key=key, reverse=order == Qt.SortOrder.DescendingOrder)
        self.layoutChanged.emit()


# -- confusion matrix ----------------------------------------------------------------------------


class ConfusionMatrixView(QWidget):
    """A painted confusion matrix: rows are true classes, columns predicted ones.

    Cell colour is the row share (recall-normalised), so small classes read as clearly as big
    ones; the count is written in cells large enough for it. Click a cell, or move with the
    arrow keys and press Enter, to emit ``cellClicked(true_index, predicted_index)``.
    """

    cellClicked = Signal(int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("confusionMatrixView")
        self.setAccessibleName(self.tr("Confusion matrix"))
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._names: list[str] = []
        self._matrix = np.zeros((0, 0), dtype=np.int64)
        self._share = np.zeros((0, 0))
        self._selected: tuple[int, int] | None = None
        self._current: tuple[int, int] = (0, 0)

    def set_matrix(self, class_names: Sequence[str], matrix: np.ndarray) -> None:
        self._names = list(class_names)
        self._matrix = np.asarray(matrix, dtype=np.int64)
        totals = self._matrix.sum(axis=1, keepdims=True)
        self._share = np.divide(
            self._matrix, totals, out=np.zeros(self._matrix.shape, dtype=float), where=totals > 0
        )
        self._selected = None
        self._current = (0, 0)
        self.updateGeometry()
        self.update()

    def matrix(self) -> np.ndarray:
        return self._matrix.copy()

    def set_selected(self, cell: tuple[int, int] | None) -> None:
        self._selected = cell
        if cell is not None:
            self._current = cell
        self.update()

    def selected(self) -> tuple[int, int] | None:
        return self._selected

    # -- geometry --------------------------------------------------------------------------

    def _label_font(self) -> QFont:
        font = QFont(self.font())
        if len(self._names) > 40:
            font.setPointSizeF(max(font.pointSizeF() * 0.8, 6.5))
        return font

    def _margins(self) -> tuple[int, int]:
        """(left, top): room for the row labels and the rotated column labels + titles."""
        fm = QFontMetrics(self._label_font())
        widest = max((fm.horizontalAdvance(name) for name in self._names), default=0)
        title = QFontMetrics(self.font()).height()
        left = min(widest, 130) + 10
        top = min(widest, 90) + 10
        return left + title + 4, top + title + 4

    def _cell_size(self) -> int:
        n = len(self._names)
        if not n:
            return _MAX_CELL
        left, top = self._margins()
        fit = min((self.width() - left - 8) / n, (self.height() - top - 8) / n)
        return int(min(max(fit, _MIN_CELL), _MAX_CELL))

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        left, top = self._margins()
        n = len(self._names)
        return QSize(left + n * _MIN_CELL + 8, top + n * _MIN_CELL + 8)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        left, top = self._margins()
        n = len(self._names)
        side = n * 32
        return QSize(left + side + 8, top + side + 8)

    def _dx(self) -> int:
        """Horizontal offset that centres the matrix in a wider widget."""
        left, _ = self._margins()
        return max(0, (self.width() - (left + len(self._names) * self._cell_size() + 8)) // 2)

    def _cell_rect(self, row: int, col: int) -> QRect:
        """In unshifted coordinates (paintEvent translates by :meth:`_dx`)."""
        left, top = self._margins()
        cell = self._cell_size()
        return QRect(left + col * cell, top + row * cell, cell, cell)

    def cell_at(self, pos: QPoint) -> tuple[int, int] | None:
        n = len(self._names)
        if not n:
            return None
        pos = pos - QPoint(self._dx(), 0)
        left, top = self._margins()
        cell = self._cell_size()
        col = (pos.x() - left) // cell
        row = (pos.y() - top) // cell
        if 0 <= row < n and 0 <= col < n:
            return int(row), int(col)
        return None

    def cell_center(self, row: int, col: int) -> QPoint:
        """Widget coordinates of a cell's centre (for clicks in tests)."""
        return self._cell_rect(row, col).center() + QPoint(self._dx(), 0)

    # -- colours ---------------------------------------------------------------------------

    def _colours(self) -> tuple[QColor, QColor, QColor, QColor]:
        palette = self.palette()
        base = palette.color(QPalette.ColorRole.Base)
        dark = base.lightness() < 128
        good = QColor("#42a5f5") if dark else QColor("#0d47a1")  # diagonal: correct
        bad = QColor("#ff8a65") if dark else QColor("#bf360c")  # off-diagonal: errors
        return base, good, bad, palette.color(QPalette.ColorRole.Text)

    @staticmethod
    def _blend(base: QColor, accent: QColor, t: float) -> QColor:
        return QColor(
            round(base.red() + (accent.red() - base.red()) * t),
            round(base.green() + (accent.green() - base.green()) * t),
            round(base.blue() + (accent.blue() - base.blue()) * t),
        )

    # -- painting --------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        n = len(self._names)
        painter = QPainter(self)
        base, good, bad, text = self._colours()
        painter.fillRect(self.rect(), self.palette().color(QPalette.ColorRole.Window))
        if not n:
            painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.tr("No results yet"))
            painter.end()
            return
        painter.translate(self._dx(), 0)
        left, top = self._margins()
        cell = self._cell_size()
        grid = QRect(left, top, cell * n, cell * n)
        painter.fillRect(grid, base)
        label_font = self._label_font()
        fm = QFontMetrics(label_font)
        title_h = QFontMetrics(self.font()).height()
        row_room = left - title_h - 4 - 6
        col_room = top - title_h - 4 - 6

        count_font = QFont(self.font())
        count_font.setPointSizeF(max(min(cell * 0.3, self.font().pointSizeF()), 6.0))
        count_fm = QFontMetrics(count_font)
        painter.setFont(count_font)
        for row in range(n):
            for col in range(n):
                rect = self._cell_rect(row, col)
                count = int(self._matrix[row, col])
                if count:
                    share = float(self._share[row, col])
                    accent = good if row == col else bad
                    fill = self._blend(base, accent, 0.12 + 0.88 * share)
                    painter.fillRect(rect, fill)
                    label = f"{count:,}"
                    if count_fm.horizontalAdvance(label) + 4 <= cell and count_fm.height() <= cell:
                        painter.setPen(QColor("white") if fill.lightness() < 140 else QColor("black"))
                        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, label)
        # Grid lines, faint, then the diagonal outline and selection.
        line = QColor(text)
        line.setAlpha(40)
        painter.setPen(QPen(line, 1))
        for i in range(n + 1):
            painter.drawLine(left, top + i * cell, left + n * cell, top + i * cell)
            painter.drawLine(left + i * cell, top, left + i * cell, top + n * cell)
        if self.hasFocus():
            focus = QColor(self.palette().color(QPalette.ColorRole.Highlight))
            painter.setPen(QPen(focus, 1, Qt.PenStyle.DotLine))
            painter.drawRect(self._cell_rect(*self._current).adjusted(1, 1, -2, -2))
        if self._selected is not None:
            selected = self._cell_rect(*self._selected)
            painter.setPen(QPen(text, 3))  # the text colour contrasts with the base in any scheme
            painter.drawRect(selected.adjusted(1, 1, -1, -1))
            painter.setPen(QPen(self.palette().color(QPalette.ColorRole.Highlight), 1))
            painter.drawRect(selected.adjusted(3, 3, -4, -4))

        # Labels: rows on the left, columns rotated above.
        painter.setFont(label_font)
        painter.setPen(text)
        show_every = max(1, math.ceil(fm.height() / cell))
        for i, name in enumerate(self._names):
            if i % show_every:
                continue
            rect = self._cell_rect(i, 0)
            painter.drawText(
                QRect(left - row_room - 6, rect.top(), row_room, cell),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                fm.elidedText(name, Qt.TextElideMode.ElideMiddle, row_room),
            )
            col_rect = self._cell_rect(0, i)
            painter.save()
            painter.translate(col_rect.left(), top - 6)
            painter.rotate(-90)
            painter.drawText(
                QRect(0, 0, col_room, cell),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                fm.elidedText(name, Qt.TextElideMode.ElideMiddle, col_room),
            )
            painter.restore()
        # Axis titles.
        painter.setFont(self.font())
        bold = QFont(self.font())
        bold.setBold(True)
        painter.setFont(bold)
        painter.drawText(
            QRect(left, 0, n * cell, title_h), Qt.AlignmentFlag.AlignCenter, self.tr("predicted")
        )
        painter.save()
        painter.translate(0, top + n * cell)
        painter.rotate(-90)
        painter.drawText(QRect(0, 0, n * cell, title_h), Qt.AlignmentFlag.AlignCenter, self.tr("true"))
        painter.restore()
        painter.end()

    # -- interaction -----------------------------------------------------------------------

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        cell = self.cell_at(event.position().toPoint())
        if event.button() == Qt.MouseButton.LeftButton and cell is not None:
            self._current = cell
            self.cellClicked.emit(*cell)
            event.accept()
            return
        super().mousePressEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        n = len(self._names)
        if not n:
            super().keyPressEvent(event)
            return
        row, col = self._current
        moves = {
            Qt.Key.Key_Left: (0, -1),
            Qt.Key.Key_Right: (0, 1),
            Qt.Key.Key_Up: (-1, 0),
            Qt.Key.Key_Down: (1, 0),
        }
        key = Qt.Key(event.key())
        if key in moves:
            dr, dc = moves[key]
            self._current = (min(max(row + dr, 0), n - 1), min(max(col + dc, 0), n - 1))
            self.update()
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space):
            self.cellClicked.emit(*self._current)
        else:
            super().keyPressEvent(event)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            cell = self.cell_at(event.pos())
            if cell is None:
                QToolTip.hideText()
            else:
                row, col = cell
                count = int(self._matrix[row, col])
                share = float(self._share[row, col])
                QToolTip.showText(
                    event.globalPos(),
                    self.tr("true <b>{t}</b> → predicted <b>{p}</b><br>{n:,} images ({s:.0%} of {t})").format(
                        t=self._names[row], p=self._names[col], n=count, s=share
                    ),
                    self,
                )
            return True
        return super().event(event)

    def focusInEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt override
        self.update()
        super().focusInEvent(event)

    def focusOutEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt override
        self.update()
        super().focusOutEvent(event)


# -- the panel -----------------------------------------------------------------------------------


class ResultsPanel(QWidget):
    """Validation results after training.

    Feed it with :meth:`set_results`, or :meth:`set_eval_result` with ``training.evaluate``'s
    ``EvalResult``. ``cellSelected(true_index, predicted_index)`` follows a click on the matrix or
    :meth:`select_cell`; ``imageActivated(path)`` a double-click (or Enter) on an image of the
    selected cell, to look at it closely (the window shows it on the Try it page).
    """

    cellSelected = Signal(int, int)
    imageActivated = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("resultsPanel")
        self.setAccessibleName(self.tr("Validation results"))
        self._names: list[str] = []
        self._paths: list[str] = []
        self._true = np.zeros(0, dtype=np.int64)
        self._pred = np.zeros(0, dtype=np.int64)
        self._confidence = np.zeros(0)
        self._loss = np.zeros(0)
        self._matrix = np.zeros((0, 0), dtype=np.int64)
        self._cell: tuple[int, int] | None = None
        self._cell_paths: list[str] = []
        self._misclassified: list[int] = []  # sample indices, highest loss first
        self._report: metrics.ClassReport | None = None
        self._items_by_path: dict[str, list[tuple[QListWidgetItem, int]]] = {}

        self._thumbnails = ThumbnailLoader(size=2 * _GALLERY_ICON, parent=self)
        self._thumbnails.thumbnailsReady.connect(self._on_thumbnails_thumbnailsReady)
        self._heatmaps = HeatmapController(self, self._thumbnails.size())
        self._heatmaps.overlaysChanged.connect(self._on_heatmaps_overlaysChanged)
        self._build()
        self.clear()

    # -- construction -----------------------------------------------------------------------

    def _build(self) -> None:
        self._summary_label = QLabel(self)
        self._summary_label.setObjectName("resultsSummaryLabel")
        self._summary_label.setAccessibleName(self.tr("Overall accuracy and macro F1"))
        self._summary_label.setWordWrap(True)
        self._summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self._metrics_model = _MetricsModel(self)
        self._table = QTableView(self)
        self._table.setObjectName("classMetricsTable")
        self._table.setAccessibleName(self.tr("Precision, recall and F1 per class"))
        self._table.setModel(self._metrics_model)
        self._table.setSortingEnabled(True)
        self._table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self._table.setAlternatingRowColors(True)
        self._table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self._table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._table.verticalHeader().hide()
        self._table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self._table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self._table.setWordWrap(False)
        header = self._table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(36)
        digits = self.fontMetrics().horizontalAdvance("0.000") + 18
        for col, title in enumerate(_MetricsModel.HEADERS[1:], start=1):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(col, max(digits, self.fontMetrics().horizontalAdvance(title) + 26))

        self._matrix_view = ConfusionMatrixView(self)
        self._matrix_view.cellClicked.connect(self._on_matrix_view_cellClicked)
        self._matrix_scroll = QScrollArea(self)
        self._matrix_scroll.setObjectName("confusionMatrixScroll")
        self._matrix_scroll.setAccessibleName(self.tr("Confusion matrix area"))
        self._matrix_scroll.setWidgetResizable(True)
        self._matrix_scroll.setWidget(self._matrix_view)

        self._cell_label = QLabel(self)
        self._cell_label.setObjectName("cellImagesLabel")
        self._cell_label.setWordWrap(True)
        self._cell_list = QListWidget(self)
        self._cell_list.setObjectName("cellImagesList")
        self._cell_list.setAccessibleName(self.tr("Images in the selected confusion-matrix cell"))
        self._cell_list.setIconSize(QSize(_LIST_ICON, _LIST_ICON))
        self._cell_list.setUniformItemSizes(True)
        self._cell_list.itemActivated.connect(self._on_cell_list_itemActivated)
        self._cell_label.setBuddy(self._cell_list)

        top_split = QSplitter(Qt.Orientation.Horizontal, self)
        top_split.setObjectName("resultsSplitter")
        top_split.setChildrenCollapsible(False)
        top_split.addWidget(_box(self, _title(self, self.tr("Per class")), self._table))
        top_split.addWidget(
            _box(self, _title(self, self.tr("Confusion matrix (click a cell to list its images)")), self._matrix_scroll)
        )
        top_split.setStretchFactor(0, 2)
        top_split.setStretchFactor(1, 3)
        top_split.setSizes([380, 500])

        self._gallery = QListWidget(self)
        self._gallery.setObjectName("misclassifiedGallery")
        self._gallery.setAccessibleName(self.tr("Misclassified validation images, highest loss first"))
        self._gallery.setViewMode(QListView.ViewMode.IconMode)
        self._gallery.setFlow(QListView.Flow.LeftToRight)
        self._gallery.setWrapping(True)
        self._gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self._gallery.setMovement(QListView.Movement.Static)
        self._gallery.setIconSize(QSize(_GALLERY_ICON, _GALLERY_ICON))
        self._gallery.setGridSize(QSize(_GALLERY_GRID_WIDTH, _GALLERY_ICON + 3 * self.fontMetrics().height() + 14))
        self._gallery.setUniformItemSizes(True)
        self._gallery.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self._gallery.itemActivated.connect(self._on_gallery_itemActivated)
        self._lazy_timer = QTimer(self)
        self._lazy_timer.setSingleShot(True)
        self._lazy_timer.setInterval(80)
        self._lazy_timer.timeout.connect(self._on_lazy_timer_timeout)
        for view in (self._gallery, self._cell_list):  # a scroll or a resize shows other images
            view.verticalScrollBar().valueChanged.connect(self._on_list_scrolled)
            view.viewport().installEventFilter(self)

        cell_page = QWidget(self)
        cell_layout = QVBoxLayout(cell_page)
        cell_layout.setContentsMargins(4, 4, 4, 4)
        cell_layout.setSpacing(4)
        cell_layout.addWidget(self._cell_label)
        cell_layout.addWidget(self._cell_list, 1)
        self._tabs = QTabWidget(self)
        self._tabs.setObjectName("resultsImageTabs")
        self._tabs.setAccessibleName(self.tr("Result images"))
        self._tabs.setDocumentMode(True)
        self._all_right_label = QLabel(self.tr("Every validation image is classified correctly: nothing to show here."), self)
        self._all_right_label.setObjectName("allCorrectLabel")
        self._all_right_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._all_right_label.setWordWrap(True)
        self._gallery_stack = QStackedWidget(self)
        self._gallery_stack.addWidget(self._gallery)
        self._gallery_stack.addWidget(self._all_right_label)
        self._tabs.addTab(self._gallery_stack, "")
        self._tabs.addTab(cell_page, "")
        self._tabs.currentChanged.connect(self._on_tabs_currentChanged)
        images = QWidget(self)
        images_layout = QVBoxLayout(images)
        images_layout.setContentsMargins(0, 0, 0, 0)
        images_layout.setSpacing(2)
        images_layout.addWidget(self._heatmaps.view)  # one row for both lists: the one on screen is explained
        images_layout.addWidget(self._tabs, 1)

        outer = QSplitter(Qt.Orientation.Vertical, self)
        outer.setObjectName("resultsOuterSplitter")
        outer.setChildrenCollapsible(False)
        outer.addWidget(top_split)
        outer.addWidget(images)
        outer.setStretchFactor(0, 3)
        outer.setStretchFactor(1, 2)
        outer.setSizes([340, 220])

        self._stale_label = QLabel(self)
        self._stale_label.setObjectName("resultsStaleLabel")
        self._stale_label.setAccessibleName(self.tr("Which model these results describe"))
        self._stale_label.setWordWrap(True)
        self._stale_label.setStyleSheet("QLabel { background: palette(alternate-base); padding: 4px; }")
        self._stale_label.hide()
        self._model_version: int | None = None

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        layout.addWidget(self._stale_label)
        layout.addWidget(self._summary_label)
        layout.addWidget(outer, 1)

    # -- public API -------------------------------------------------------------------------

    @property
    def heatmaps(self) -> HeatmapController:
        """The Heatmap row and its overlays (toggle, class, opacity, counts)."""
        return self._heatmaps

    @property
    def model_lease(self) -> ModelLease | None:
        """The window's lease: heatmaps wait their turn on the model."""
        return self._heatmaps.model_lease

    @model_lease.setter
    def model_lease(self, lease: ModelLease | None) -> None:
        self._heatmaps.model_lease = lease

    def set_model(self, loaded: Any, *, training: bool = False) -> None:
        """Explain the listed images with ``loaded`` (the current ``LoadedModel``, or None).
        While ``training`` the run's worker owns the model: no heatmaps, and the row says why."""
        reason = self.tr("Training is using the model: heatmaps come back when the run ends") if training else None
        self._heatmaps.set_model(None if training else loaded, reason)

    def set_results(
        self,
        class_names: Sequence[str],
        sample_paths: Sequence[str],
        true_labels: Sequence[int] | np.ndarray,
        predicted_labels: Sequence[int] | np.ndarray | None = None,
        probabilities: Sequence[float] | np.ndarray | None = None,
        losses: Sequence[float] | np.ndarray | None = None,
        model_version: int | None = None,
    ) -> None:
        """Show the evaluation of ``len(sample_paths)`` validation images, made with the model
        at ``model_version`` (see :meth:`model_changed`).

        ``probabilities`` is either ``(N, C)`` class probabilities or ``(N,)`` confidences of
        the predicted class. ``predicted_labels`` defaults to the argmax of 2-D
        probabilities; ``losses`` (per image) default to ``-log p(true class)`` from them.
        """
        names = [str(n) for n in class_names]
        paths = [str(p) for p in sample_paths]
        true = np.asarray(true_labels, dtype=np.int64).reshape(-1)
        probs = None if probabilities is None else np.asarray(probabilities, dtype=np.float64)
        if predicted_labels is None:
            if probs is None or probs.ndim != 2:
                raise ValueError("predicted_labels are needed unless probabilities are (N, C)")
            pred = probs.argmax(axis=1).astype(np.int64)
        else:
            pred = np.asarray(predicted_labels, dtype=np.int64).reshape(-1)
        n = len(paths)
        if true.shape[0] != n or pred.shape[0] != n:
            raise ValueError(f"{n} paths but {true.shape[0]} true and {pred.shape[0]} predicted labels")
        rows = np.arange(n)
        if probs is None:
            confidence = np.full(n, np.nan)
        elif probs.ndim == 2:
            confidence = probs[rows, pred] if n else np.zeros(0)
        else:
            confidence = probs.reshape(-1)
        if losses is not None:
            loss = np.asarray(losses, dtype=np.float64).reshape(-1)
        elif probs is not None and probs.ndim == 2 and n:
            loss = -np.log(np.clip(probs[rows, true], 1e-12, 1.0))
        else:
            loss = np.where(true == pred, 0.0, np.nan_to_num(confidence, nan=1.0))
        self._thumbnails.cancel()
        self._names, self._paths = names, paths
        self._true, self._pred, self._confidence, self._loss = true, pred, confidence, loss
        self._matrix = metrics.confusion_matrix(true, pred, len(names))
        self._report = metrics.class_report(self._matrix)
        wrong = np.flatnonzero(true != pred)
        # Highest loss first; NaN losses last; ties keep the evaluation order.
        order = np.argsort(-np.nan_to_num(loss[wrong], nan=-np.inf), kind="stable")
        self._misclassified = [int(i) for i in wrong[order]]
        self._model_version = model_version
        self._stale_label.hide()
        self._show()

    def model_changed(self, version: int, reason: str) -> None:
        """The model is now at ``version`` because of ``reason`` ("the head was replaced"):
        results made with another version say so instead of passing for the current model."""
        if not self.has_results() or self._model_version in (None, version):
            return
        self._stale_label.setText(
            self.tr("These results describe an earlier state of the model ({reason} since). "
                    "Train or evaluate again to see the model as it is now.").format(reason=reason)
        )
        self._stale_label.show()

    def is_stale(self) -> bool:
        return not self._stale_label.isHidden()

    def set_eval_result(self, result: Any, class_names: Sequence[str], samples: Sequence[Any]) -> None:
        """Show a ``training.EvalResult``.

        ``samples`` are the evaluated images in the loader's order: paths, or ``ImageSample``
        objects (e.g. ``split.val``), whose paths are used.
        """
        paths = [getattr(sample, "path", sample) for sample in samples]
        self.set_results(
            class_names, paths, result.targets, result.predictions, result.probabilities, result.losses
        )

    def clear(self) -> None:
        self._thumbnails.cancel()
        self._names, self._paths = [], []
        self._true = self._pred = np.zeros(0, dtype=np.int64)
        self._confidence = self._loss = np.zeros(0)
        self._matrix = np.zeros((0, 0), dtype=np.int64)
        self._report = None
        self._misclassified = []
        self._model_version = None
        self._stale_label.hide()
        self._show()

    def has_results(self) -> bool:
        return bool(self._names)

    def confusion_matrix(self) -> np.ndarray:
        """Rows true class, columns predicted class (a copy)."""
        return self._matrix.copy()

    def class_metrics(self) -> list[tuple[str, float, float, float, int]]:
        """(class, precision, recall, F1, support) in class order."""
        if self._report is None:
            return []
        r = self._report
        return [
            (name, float(r.precision[i]), float(r.recall[i]), float(r.f1[i]), int(r.support[i]))
            for i, name in enumerate(self._names)
        ]

    def accuracy(self) -> float:
        return self._report.accuracy if self._report is not None else float("nan")

    def macro_f1(self) -> float:
        return self._report.macro_f1 if self._report is not None else float("nan")

    def select_cell(self, true_idx: int, pred_idx: int) -> None:
        """List the images of true class ``true_idx`` predicted as ``pred_idx``."""
        n = len(self._names)
        if not (0 <= true_idx < n and 0 <= pred_idx < n):
            raise IndexError(f"no cell ({true_idx}, {pred_idx}) in a {n}-class matrix")
        self._cell = (int(true_idx), int(pred_idx))
        self._matrix_view.set_selected(self._cell)
        indices = [
            int(i) for i in np.flatnonzero((self._true == true_idx) & (self._pred == pred_idx))
        ]
        if true_idx != pred_idx:  # errors: the most confidently wrong first, like the gallery
            indices.sort(key=lambda i: -_finite(self._loss[i]))
        self._cell_paths = [self._paths[i] for i in indices]
        self._heatmaps.set_shown([])  # another selection: the job on the old one stops now
        self._forget(_LIST_ICON)
        self._cell_list.clear()
        true_name, pred_name = self._names[true_idx], self._names[pred_idx]
        verdict = self.tr("correct") if true_idx == pred_idx else self.tr("wrong")
        self._cell_label.setText(
            self.tr("<b>true {t} → predicted {p}</b> ({v}): %n image(s)", "", len(indices)).format(
                t=true_name, p=pred_name, v=verdict
            )
        )
        for i in indices:
            item = QListWidgetItem(
                f"{Path(self._paths[i]).name}   —   {true_name} → {pred_name}{self._confidence_text(i)}"
            )
            item.setToolTip(self._tooltip(i))
            item.setData(Qt.ItemDataRole.UserRole, self._paths[i])
            item.setData(_SAMPLE_ROLE, i)
            item.setIcon(self._icon(self._paths[i], _LIST_ICON))
            self._cell_list.addItem(item)
            self._track(item, self._paths[i], _LIST_ICON)
        self._tabs.setTabText(
            1, self.tr("Cell: {t} → {p} ({n:,})").format(t=_elide(true_name), p=_elide(pred_name), n=len(indices))
        )
        self._tabs.setCurrentIndex(1)
        self._thumbnails.load(self._cell_paths[:_MAX_THUMBNAILS])
        self._lazy_timer.start()  # the heatmaps of the images on screen, once the list is laid out
        self.cellSelected.emit(*self._cell)

    def selected_cell(self) -> tuple[int, int] | None:
        return self._cell

    def selected_cell_images(self) -> list[str]:
        """Paths of the images in the selected cell, in the order listed."""
        return list(self._cell_paths)

    def misclassified_count(self) -> int:
        return len(self._misclassified)

    def misclassified_images(self) -> list[str]:
        """Paths of the misclassified images as shown: highest loss first."""
        return [self._paths[i] for i in self._misclassified]

    def thumbnails_loading(self) -> bool:
        return self._thumbnails.is_busy()

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        ok = self._heatmaps.shutdown(timeout_ms)
        return self._thumbnails.close(timeout_ms) and ok

    # -- display ----------------------------------------------------------------------------

    def _show(self) -> None:
        self._heatmaps.set_shown([])
        self._cell = None
        self._cell_paths = []
        self._items_by_path = {}
        self._cell_list.clear()
        self._gallery.clear()
        self._matrix_view.set_matrix(self._names, self._matrix)
        self._metrics_model.set_rows(self.class_metrics())
        self._cell_label.setText(self.tr("Click a cell of the confusion matrix to list its images here."))
        self._tabs.setTabText(1, self.tr("Selected cell"))
        self._tabs.setCurrentIndex(0)
        wrong = len(self._misclassified)
        self._tabs.setTabText(0, self.tr("Misclassified, highest loss first (%n)", "", wrong))
        self._gallery_stack.setCurrentIndex(1 if self._names and wrong == 0 else 0)
        if not self._names:
            self._summary_label.setText(
                self.tr("No results yet: train a model, and its validation results appear here.")
            )
            return
        self._summary_label.setText(
            self.tr(
                "<b>Accuracy {acc:.1%}</b> · macro F1 {f1:.3f} · {n:,} validation images · "
                "{w:,} misclassified"
            ).format(acc=self.accuracy(), f1=self.macro_f1(), n=len(self._paths), w=wrong)
        )
        fm = self._gallery.fontMetrics()
        room = _GALLERY_GRID_WIDTH - 10
        for i in self._misclassified:
            confidence = self._confidence[i]
            lines = [
                fm.elidedText(self._names[self._true[i]], Qt.TextElideMode.ElideMiddle, room),
                fm.elidedText("→ " + self._names[self._pred[i]], Qt.TextElideMode.ElideMiddle, room),
            ]
            if math.isfinite(confidence):
                lines.append(self.tr("{c:.0%} sure").format(c=confidence))
            item = QListWidgetItem("\n".join(lines))
            item.setToolTip(self._tooltip(i))
            item.setData(Qt.ItemDataRole.UserRole, self._paths[i])
            item.setData(_SAMPLE_ROLE, i)
            item.setIcon(self._icon(self._paths[i], _GALLERY_ICON))
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            item.setSizeHint(self._gallery.gridSize() - QSize(4, 4))
            self._gallery.addItem(item)
            self._track(item, self._paths[i], _GALLERY_ICON)
        self._thumbnails.load(self.misclassified_images()[:_MAX_THUMBNAILS])
        self._lazy_timer.start()

    def _confidence_text(self, i: int) -> str:
        confidence = self._confidence[i]
        return f" ({confidence:.0%})" if math.isfinite(confidence) else ""

    def _tooltip(self, i: int) -> str:
        lines = [
            self._paths[i],
            self.tr("true: {t}  predicted: {p}").format(t=self._names[self._true[i]], p=self._names[self._pred[i]]),
        ]
        if math.isfinite(self._confidence[i]):
            lines.append(self.tr("confidence: {c:.1%}").format(c=self._confidence[i]))
        if math.isfinite(self._loss[i]):
            lines.append(self.tr("loss: {l:.3f}").format(l=self._loss[i]))
        return "\n".join(lines)

    def _icon(self, path: str, side: int) -> QIcon:
        """The image's heatmap where it is shown and computed, else its thumbnail."""
        overlay = self._heatmaps.overlay(path)
        if overlay is not None:
            return QIcon(fit_pixmap(overlay, side))
        return icon_for(self._thumbnails.cached(path), side, self.palette())

    def _heatmap_tooltip(self, i: int) -> str:
        label = self._heatmaps.label(self._paths[i])
        if label is None:
            return self._tooltip(i)
        return self._tooltip(i) + "\n" + self.tr("Heatmap: where the model sees {label}").format(label=label)

    @Slot(int, int)
    def _on_matrix_view_cellClicked(self, true_idx: int, pred_idx: int) -> None:
        self.select_cell(true_idx, pred_idx)

    @Slot(object)
    def _on_thumbnails_thumbnailsReady(self, items: object) -> None:
        for thumb in items:  # type: ignore[union-attr]
            for item, side in self._items_by_path.get(thumb.path, ()):
                item.setIcon(self._icon(thumb.path, side))

    @Slot(object)
    def _on_heatmaps_overlaysChanged(self, paths: object) -> None:
        for path in paths:  # type: ignore[union-attr]
            for item, side in self._items_by_path.get(path, ()):
                item.setIcon(self._icon(path, side))
                item.setToolTip(self._heatmap_tooltip(int(item.data(_SAMPLE_ROLE))))

    @Slot(int)
    def _on_tabs_currentChanged(self, _index: int) -> None:
        self._heatmaps.set_shown([])  # the other list: the job on this one stops now
        self._lazy_timer.start()

    @Slot(QListWidgetItem)
    def _on_gallery_itemActivated(self, item: QListWidgetItem) -> None:
        """Double-click / Enter on a misclassified image: show its whole confusion cell."""
        index = item.data(_SAMPLE_ROLE)
        if index is not None:
            self.select_cell(int(self._true[index]), int(self._pred[index]))

    @Slot(QListWidgetItem)
    def _on_cell_list_itemActivated(self, item: QListWidgetItem) -> None:
        path = item.data(Qt.ItemDataRole.UserRole)
        if path:
            self.imageActivated.emit(str(path))

    @Slot(int)
    def _on_list_scrolled(self, _value: int) -> None:
        self._lazy_timer.start()

    @Slot()
    def _on_lazy_timer_timeout(self) -> None:
        """The images on screen now: thumbnails beyond the first batch load when they are
        scrolled into view, and heatmaps are computed for these images only."""
        shown: list[str] = []
        for view in (self._gallery, self._cell_list):
            paths = [view.item(row).data(Qt.ItemDataRole.UserRole) for row in _visible_rows(view)]
            wanted = [path for path in paths if self._thumbnails.cached(path) is None]
            if wanted:
                self._thumbnails.load(wanted)
            shown += paths
        self._heatmaps.set_shown(shown)

    def _track(self, item: QListWidgetItem, path: str, side: int) -> None:
        self._items_by_path.setdefault(path, []).append((item, side))

    def _forget(self, side: int) -> None:
        """Drop the index entries of one list (its items are about to be deleted)."""
        for path in list(self._items_by_path):
            kept = [(item, s) for item, s in self._items_by_path[path] if s != side]
            if kept:
                self._items_by_path[path] = kept
            else:
                del self._items_by_path[path]

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._matrix_view.update()
        super().changeEvent(event)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.Resize:  # a list's viewport: other images are on screen
            self._lazy_timer.start()
        return super().eventFilter(watched, event)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        self._lazy_timer.start()
        super().showEvent(event)

    def hideEvent(self, event: QHideEvent) -> None:  # noqa: N802 - Qt override
        self._lazy_timer.stop()
        self._heatmaps.set_shown([])  # another page: nothing of this one is on screen
        super().hideEvent(event)


def _visible_rows(view: QListWidget) -> range:
    """The rows of ``view`` on screen. Items are laid out in row order, top to bottom (a list,
    or icons that wrap left to right), so the first is found by bisection; none before the
    view is shown and laid out."""
    count = view.count()
    if not count or not view.isVisible():
        return range(0)
    area = view.viewport().rect()
    low, high = 0, count
    while low < high:
        middle = (low + high) // 2
        if view.visualItemRect(view.item(middle)).bottom() < area.top():
            low = middle + 1
        else:
            high = middle
    end = low
    while end < count and area.intersects(view.visualItemRect(view.item(end))):
        end += 1
    return range(low, end)


def _elide(text: str, limit: int = 18) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else -math.inf


def _title(parent: QWidget, text: str) -> QLabel:
    return QLabel(f"<b>{text}</b>", parent)


def _box(parent: QWidget, header: QWidget, body: QWidget) -> QWidget:
    box = QWidget(parent)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(2)
    layout.addWidget(header)
    layout.addWidget(body, 1)
    return box
