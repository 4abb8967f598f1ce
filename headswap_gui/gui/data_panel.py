"""The data page: choose or drop an image folder, see what is in it before training.

Scanning (``core.data.scan_image_folder``) opens every image, which takes seconds on a big
folder, so it runs on a worker thread with a progress bar; thumbnails are decoded there too.
The page shows what the scan found: a summary line, images per class as a bar chart (with a
warning when the classes are badly imbalanced), a few thumbnails per class, and every file
that was left out with the reason.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from headswap_gui.gui.qt_env import prepare_qt_environment

prepare_qt_environment()

import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import (  # noqa: E402
    QAbstractTableModel,
    QEvent,
    QModelIndex,
    QPersistentModelIndex,
    QSize,
    Qt,
    Signal,
    Slot,
)
from PySide6.QtGui import (  # noqa: E402
    QColor,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QIcon,
    QPainter,
    QPalette,
    QPen,
)
from PySide6.QtWidgets import (  # noqa: E402
    QAbstractItemView,
    QFileDialog,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QTableView,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from headswap_gui.core.data import DatasetInfo, scan_image_folder  # noqa: E402
from headswap_gui.core.errors import FlatImageFolderError  # noqa: E402
from headswap_gui.gui.buttons import push_button  # noqa: E402
from headswap_gui.gui.progress_bar import ProgressBar  # noqa: E402
from headswap_gui.gui.thumbnails import Thumbnail, ThumbnailLoader, icon_for  # noqa: E402
from headswap_gui.gui.worker import GeneratorRunner  # noqa: E402

__all__ = ["DataPanel", "IMBALANCE_RATIO", "THUMBNAILS_PER_CLASS", "scan_events"]

IMBALANCE_RATIO = 3.0
"""Warn when the largest class has more than this many times the images of the smallest."""
THUMBNAILS_PER_CLASS = 12  # enough to fill a 1920-px-wide page; narrower ones scroll sideways
_THUMB_SIDE = 64
_BAR_ROW_PX = 20  # vertical space per class in the bar chart
_MAX_TICK_CHARS = 22
_MAX_NAMED_CLASSES = 5


# -- the scan, as a generator the runner can drive ----------------------------------------------


class _ScanProgress:
    __slots__ = ("done", "total")

    def __init__(self, done: int, total: int) -> None:
        self.done, self.total = done, total


class _ScanDone:
    __slots__ = ("info",)

    def __init__(self, info: DatasetInfo) -> None:
        self.info = info


_END = object()


def scan_events(root: str, stop: threading.Event) -> Iterator[object]:
    """Run ``scan_image_folder(root)`` and yield its progress, then the result.

    The scan reports progress through a callback, so it runs on a helper thread that feeds a
    queue this generator drains; a ``DataError`` is re-raised here, on the runner's thread,
    which reports it as ``failed``. The scan itself cannot be interrupted; after a stop the
    generator simply stops reporting and waits for it to end.
    """
    events: queue.SimpleQueue[object] = queue.SimpleQueue()
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            outcome["info"] = scan_image_folder(
                root, on_progress=lambda done, total: events.put(_ScanProgress(done, total))
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the generator below
            outcome["error"] = exc
        finally:
            events.put(_END)

    helper = threading.Thread(target=work, name="headswap-scan", daemon=True)
    helper.start()
    try:
        while True:
            item = events.get()
            if item is _END:
                break
            if not stop.is_set():
                yield item
    finally:
        helper.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    yield _ScanDone(outcome["info"])  # type: ignore[arg-type]


# -- thumbnails: one row of a few images per class -----------------------------------------------


class _ClassStripModel(QAbstractTableModel):
    """Rows are classes, columns are up to :data:`THUMBNAILS_PER_CLASS` sample images."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self._widget = parent
        self._names: list[str] = []
        self._counts: list[int] = []
        self._paths: list[list[str]] = []
        self._where: dict[str, tuple[int, int]] = {}
        self._thumbs: dict[str, Thumbnail] = {}
        self._icons: dict[str, QIcon] = {}
        self._placeholder: QIcon | None = None

    def set_strips(self, names: Sequence[str], counts: Sequence[int], paths: Sequence[Sequence[str]]) -> None:
        self.beginResetModel()
        self._names, self._counts = list(names), list(counts)
        self._paths = [list(p) for p in paths]
        self._where = {path: (r, c) for r, row in enumerate(self._paths) for c, path in enumerate(row)}
        self._thumbs.clear()
        self._icons.clear()
        self.endResetModel()

    def all_paths(self) -> list[str]:
        return [path for row in self._paths for path in row]

    def path_at(self, row: int, column: int) -> str | None:
        paths = self._paths[row] if 0 <= row < len(self._paths) else []
        return paths[column] if 0 <= column < len(paths) else None

    def add_thumbnails(self, items: Sequence[Thumbnail]) -> None:
        for item in items:
            where = self._where.get(item.path)
            if where is None:
                continue
            self._thumbs[item.path] = item
            self._icons.pop(item.path, None)
            index = self.index(*where)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])

    def loaded_count(self) -> int:
        return sum(1 for t in self._thumbs.values() if t.image is not None)

    def palette_changed(self) -> None:
        self._icons.clear()
        self._placeholder = None
        if self._names:
            self.dataChanged.emit(self.index(0, 0), self.index(self.rowCount() - 1, self.columnCount() - 1))

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._names)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        if parent.isValid() or not self._names:
            return 0
        return max(1, max(len(row) for row in self._paths))

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        paths = self._paths[row]
        if col >= len(paths):
            return None
        path = paths[col]
        if role == Qt.ItemDataRole.DecorationRole:
            icon = self._icons.get(path)
            if icon is None:
                thumb = self._thumbs.get(path)
                if thumb is None:
                    if self._placeholder is None:
                        self._placeholder = icon_for(None, _THUMB_SIDE, self._widget.palette())
                    return self._placeholder
                icon = icon_for(thumb, _THUMB_SIDE, self._widget.palette())
                self._icons[path] = icon
            return icon
        if role in (Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.AccessibleTextRole):
            thumb = self._thumbs.get(path)
            text = f"{self._names[row]}: {Path(path).name}"
            if thumb is not None and thumb.error:
                text += f" (could not show it: {thumb.error})"
            return text
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> object:  # noqa: N802
        if orientation == Qt.Orientation.Vertical and 0 <= section < len(self._names):
            if role == Qt.ItemDataRole.DisplayRole:
                return f"{_elide(self._names[section], 16)}\n{self._counts[section]:,} images"
            if role == Qt.ItemDataRole.ToolTipRole:
                return self._names[section]
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid() or index.column() >= len(self._paths[index.row()]):
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable


# -- bar chart of images per class ---------------------------------------------------------------


class _CountAxis(pg.AxisItem):
    """Whole-number ticks at least ~45 px apart (counts never tick at 2.5)."""

    def tickSpacing(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, float]]:  # noqa: N802, N803 - Qt API
        span = maxVal - minVal
        if size <= 0 or span <= 0:
            return super().tickSpacing(minVal, maxVal, size)
        target = max(span * 45.0 / size, 1.0)
        magnitude = 10 ** math.floor(math.log10(target))
        spacing = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= target)
        return [(float(spacing), 0.0)]


class _ClassCountChart(QScrollArea):
    """Horizontal bars, one per class, names on the left axis, counts at the bar ends.

    The plot gets a fixed height per class and scrolls, so 200 classes stay legible.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("classCountChart")
        self.setAccessibleName(self.tr("Images per class"))
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._plot = pg.PlotWidget(
            axisItems={"bottom": _CountAxis("bottom"), "top": _CountAxis("top")}
        )
        self._plot.setObjectName("classCountPlot")
        self._plot.setAccessibleName(self.tr("Bar chart of images per class"))
        item = self._plot.getPlotItem()
        item.setMouseEnabled(x=False, y=False)
        item.setMenuEnabled(False)
        item.hideButtons()
        item.invertY(True)
        item.showGrid(x=True, y=False, alpha=0.2)
        item.setContentsMargins(4, 4, 12, 4)
        self._plot.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setWidget(self._plot)
        self._bars: pg.BarGraphItem | None = None
        self._labels: list[pg.TextItem] = []
        self._names: list[str] = []
        self._counts: list[int] = []
        self._small: set[int] = set()
        self.apply_theme()

    def set_counts(self, names: Sequence[str], counts: Sequence[int], small: set[int]) -> None:
        self._names, self._counts, self._small = list(names), list(counts), set(small)
        self._rebuild()

    def _rebuild(self) -> None:
        item = self._plot.getPlotItem()
        if self._bars is not None:
            item.removeItem(self._bars)
            self._bars = None
        for label in self._labels:
            item.removeItem(label)
        self._labels = []
        n = len(self._names)
        if not n:
            return
        theme = self._theme
        brushes = [pg.mkBrush(theme["small"] if i in self._small else theme["bar"]) for i in range(n)]
        self._bars = pg.BarGraphItem(
            x0=0, y=list(range(n)), height=0.7, width=self._counts, brushes=brushes, pen=pg.mkPen(None)
        )
        item.addItem(self._bars)
        top = max(self._counts)
        for i, count in enumerate(self._counts):
            label = pg.TextItem(f"{count:,}", color=theme["fg"], anchor=(0, 0.5))
            label.setPos(count + top * 0.01, i)
            item.addItem(label)
            self._labels.append(label)
        axis = item.getAxis("left")
        ticks = [(i, _elide(name, _MAX_TICK_CHARS)) for i, name in enumerate(self._names)]
        axis.setTicks([ticks, []])
        metrics = self.fontMetrics()
        widest = max(metrics.horizontalAdvance(text) for _, text in ticks)
        axis.setWidth(min(widest + 14, 260))
        item.setYRange(-0.6, n - 0.4, padding=0)
        # A long chart scrolls: keep the count axis on top, where it is visible at first.
        many = n > 15
        item.showAxis("top" if many else "bottom")
        item.hideAxis("bottom" if many else "top")
        # Leave room right of the longest bar for its count.
        count_width = metrics.horizontalAdvance(f"{top:,}") + 16
        plot_width = max(self.viewport().width() - axis.width() - 40, 100)
        item.setXRange(0, top * (1 + count_width / plot_width), padding=0)
        height = max(n * _BAR_ROW_PX + 48, 120)
        self._plot.setFixedHeight(height)
        self.setMaximumHeight(height + 2 * self.frameWidth())  # no empty frame under the bars; many classes scroll

    def resizeEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt override
        super().resizeEvent(event)
        if self._names:
            self._rebuild()

    def apply_theme(self) -> None:
        palette = self.palette()
        background = palette.color(QPalette.ColorRole.Base)
        fg = palette.color(QPalette.ColorRole.Text)
        dark = background.lightness() < 128
        self._theme = {
            "fg": fg,
            "bar": QColor("#64b5f6") if dark else QColor("#1976d2"),
            "small": QColor("#ffb74d") if dark else QColor("#ef6c00"),
        }
        self._plot.setBackground(background)
        item = self._plot.getPlotItem()
        for side in ("left", "bottom", "top"):
            axis = item.getAxis(side)
            axis.enableAutoSIPrefix(False)
            axis.setPen(pg.mkPen(fg))
            axis.setTextPen(pg.mkPen(fg))
        item.setLabel("bottom", self.tr("images"), color=fg.name())
        item.setLabel("top", self.tr("images"), color=fg.name())
        self._rebuild()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self.apply_theme()
        super().changeEvent(event)


# -- the panel -----------------------------------------------------------------------------------


class DataPanel(QWidget):
    """Pick the training images: a folder with one subfolder per class.

    Signals: ``datasetChanged(DatasetInfo)`` after a successful scan; ``scanFailed(str)`` with
    the user-facing message when a folder cannot be used (the previously loaded dataset, if
    any, stays in use and on screen); ``tryImagesRequested(list[str])`` when the user, having
    opened a folder of images without class folders, asks to classify them on the Try it page.
    """

    datasetChanged = Signal(object)
    scanFailed = Signal(str)
    tryImagesRequested = Signal(list)
    trainRequested = Signal()
    imageActivated = Signal(str)  # a double-click or Enter on a sample: show the image large

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("dataPanel")
        self.setAccessibleName(self.tr("Training data"))
        self.setAcceptDrops(True)
        self._dataset: DatasetInfo | None = None
        self._scan_runner: GeneratorRunner | None = None
        self._scan_root: str | None = None
        self._drag_active = False
        self._class_counts: dict[str, int] = {}
        self._loose_images: list[str] = []  # what "Classify them in Try it" sends

        self._thumbnails = ThumbnailLoader(size=_THUMB_SIDE * 2, parent=self)
        self._thumbnails.thumbnailsReady.connect(self._on_thumbnails_thumbnailsReady)

        self._build()

    # -- construction -----------------------------------------------------------------------

    def _build(self) -> None:
        self._choose_button = push_button(
            self, self.tr("Choose folder…"), name="chooseFolderButton", accessible=self.tr("Choose image folder"),
            tooltip=self.tr("Choose a folder with one subfolder of images per class (or train/ and val/)"),
            on_click=self._on_choose_button_clicked,
        )

        self._path_label = QLabel(self.tr("No folder loaded"), self)
        self._path_label.setObjectName("dataPathLabel")
        self._path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._path_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        self._progress = ProgressBar(self)
        self._progress.setObjectName("scanProgressBar")
        self._progress.setAccessibleName(self.tr("Folder scan progress"))
        self._progress.setMaximumWidth(260)
        self._progress.setTextVisible(True)
        self._progress.hide()

        top = QHBoxLayout()
        top.setSpacing(8)
        top.addWidget(self._choose_button)
        top.addWidget(self._path_label, 1)
        top.addWidget(self._progress)

        self._error_label = _message_label(self, "dataErrorLabel", error=True)
        # A folder of images without class folders may be meant for trying the model, not
        # for training: offer that next to the explanation.
        self._try_images_button = push_button(
            self, self.tr("Classify them in Try it"), name="tryLooseImagesButton",
            accessible=self.tr("Classify these images in Try it"),
            tooltip=self.tr("Show these images on the Try it page with the model's scores"),
            on_click=self._on_try_images_button_clicked,
        )
        self._try_images_button.hide()
        self._summary_label = QLabel(self)
        self._summary_label.setObjectName("dataSummaryLabel")
        self._summary_label.setAccessibleName(self.tr("Dataset summary"))
        self._summary_label.setWordWrap(True)
        self._summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._warning_label = _message_label(self, "imbalanceWarningLabel", error=False)

        # Empty state: what to drop, and what a usable folder looks like.
        self._empty_label = QLabel(
            self.tr(
                "<p style='font-size:14pt'>Drop an image folder here, or click "
                "<b>Choose folder…</b></p>"
                "<p>Put each class's images in its own subfolder, e.g. <tt>pets/cats/</tt> and "
                "<tt>pets/dogs/</tt>. A folder with <tt>train/</tt> and <tt>val/</tt> (the same "
                "class folders in each) keeps that split.</p>"
            ),
            self,
        )
        self._empty_label.setObjectName("dataEmptyLabel")
        self._empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._empty_label.setWordWrap(True)
        self._empty_label.setMargin(24)

        self._chart = _ClassCountChart(self)
        self._chart.setMinimumWidth(220)

        self._strips = _ClassStripModel(self)
        self._strip_view = QTableView(self)
        self._strip_view.setObjectName("classThumbnailView")
        self._strip_view.setAccessibleName(self.tr("Sample images per class"))
        self._strip_view.setModel(self._strips)
        self._strip_view.setIconSize(QSize(_THUMB_SIDE, _THUMB_SIDE))
        self._strip_view.setShowGrid(False)
        self._strip_view.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self._strip_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._strip_view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self._strip_view.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self._strip_view.horizontalHeader().hide()
        self._strip_view.activated.connect(self._on_strip_view_activated)
        self._strip_view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self._strip_view.horizontalHeader().setDefaultSectionSize(_THUMB_SIDE + 8)
        vertical = self._strip_view.verticalHeader()
        vertical.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vertical.setDefaultSectionSize(_THUMB_SIDE + 8)
        vertical.setDefaultAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        chart_box = _titled(self, self.tr("Images per class"), self._chart)
        chart_box.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)  # as tall as its bars
        strip_box = _titled(self, self.tr("Samples"), self._strip_view)

        # Under the chart: what to do with these images, one click away.
        self._next_label = QLabel(self)
        self._next_label.setObjectName("dataNextLabel")
        self._next_label.setWordWrap(True)
        self._train_button = push_button(
            self, self.tr("Train on these images"), name="trainOnDataButton",
            accessible=self.tr("Train on these images"),
            tooltip=self.tr("Start training with the settings on the Train page (Ctrl+Return)"),
            on_click=self.trainRequested,
        )
        next_box = QGroupBox(self.tr("Next"), self)
        next_box.setObjectName("dataNextBox")
        next_layout = QVBoxLayout(next_box)
        next_layout.addWidget(self._next_label)
        next_layout.addWidget(self._train_button, 0, Qt.AlignmentFlag.AlignLeft)
        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.setSpacing(10)
        left_layout.addWidget(chart_box)
        left_layout.addWidget(next_box)
        left_layout.addStretch(1)
        self.set_can_train(False, self.tr("Load a model to train on these images."))

        self._splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self._splitter.setObjectName("dataSplitter")
        self._splitter.setChildrenCollapsible(False)
        self._splitter.addWidget(left)
        self._splitter.addWidget(strip_box)
        self._splitter.setStretchFactor(0, 2)
        self._splitter.setStretchFactor(1, 3)
        self._splitter.setSizes([360, 540])

        self._skipped_button = QToolButton(self)
        self._skipped_button.setObjectName("skippedFilesToggle")
        self._skipped_button.setAccessibleName(self.tr("Show skipped files"))
        self._skipped_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self._skipped_button.setArrowType(Qt.ArrowType.RightArrow)
        self._skipped_button.setCheckable(True)
        self._skipped_button.setAutoRaise(True)
        self._skipped_button.toggled.connect(self._on_skipped_button_toggled)
        self._skipped_tree = QTreeWidget(self)
        self._skipped_tree.setObjectName("skippedFilesList")
        self._skipped_tree.setAccessibleName(self.tr("Skipped files and reasons"))
        self._skipped_tree.setHeaderLabels([self.tr("File"), self.tr("Reason")])
        self._skipped_tree.setRootIsDecorated(False)
        self._skipped_tree.setUniformRowHeights(True)
        self._skipped_tree.setAlternatingRowColors(True)
        self._skipped_tree.header().setStretchLastSection(False)
        self._skipped_tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self._skipped_tree.header().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self._skipped_tree.setMaximumHeight(160)
        self._skipped_tree.hide()

        content = QWidget(self)
        content_layout = QVBoxLayout(content)
        content_layout.setContentsMargins(0, 0, 0, 0)
        content_layout.setSpacing(6)
        content_layout.addWidget(self._summary_label)
        content_layout.addWidget(self._warning_label)
        content_layout.addWidget(self._splitter, 1)
        content_layout.addWidget(self._skipped_button)
        content_layout.addWidget(self._skipped_tree)

        self._stack = QStackedWidget(self)
        self._stack.addWidget(self._empty_label)
        self._stack.addWidget(content)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        layout.addLayout(top)
        layout.addWidget(self._error_label)
        layout.addWidget(self._try_images_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self._stack, 1)
        self._update_skipped_header(0)

    # -- public API -------------------------------------------------------------------------

    def load_folder(self, path: str | os.PathLike[str]) -> None:
        """Scan ``path`` on a worker thread; ``datasetChanged`` or ``scanFailed`` follows."""
        root = os.fspath(path)
        if self._scan_runner is not None:
            self._scan_runner.request_stop()  # its late events are ignored (see sender check)
        self._scan_root = root
        self._show_error("")
        self._progress.setRange(0, 0)  # busy until the scan knows how many files there are
        self._progress.setFormat(self.tr("Looking for images…"))
        self._progress.show()
        self._path_label.setText(root)
        self._path_label.setToolTip(root)
        runner = GeneratorRunner(lambda stop: scan_events(root, stop), stop_grace_s=0.0)
        runner.eventEmitted.connect(self._on_scan_runner_eventEmitted)
        runner.failed.connect(self._on_scan_runner_failed)
        runner.finished.connect(self._on_scan_runner_finished)
        self._scan_runner = runner
        runner.start()

    def choose_folder(self) -> None:
        """Ask for a folder (see :meth:`ask_folder`) and load it."""
        start = self._dataset.root if self._dataset is not None else ""
        folder = self.ask_folder(self, start)
        if folder:
            self.load_folder(folder)

    @classmethod
    def ask_folder(cls, parent: QWidget | None, start: str = "") -> str | None:
        """The folder dialog; tests monkeypatch this."""
        folder = QFileDialog.getExistingDirectory(
            parent, parent.tr("Choose an image folder") if parent else "Choose an image folder", start
        )
        return folder or None

    def set_dataset(self, info: DatasetInfo | None) -> None:
        """Show an already scanned dataset (e.g. restored with a run); emits ``datasetChanged``
        when it differs from the current one."""
        changed = info is not self._dataset
        self._dataset = info
        self._show_error("")
        self._show_dataset(info)
        if changed:
            self.datasetChanged.emit(info)

    def dataset(self) -> DatasetInfo | None:
        return self._dataset

    @Slot(QModelIndex)
    def _on_strip_view_activated(self, index: QModelIndex) -> None:
        path = self._strips.path_at(index.row(), index.column())
        if path:
            self.imageActivated.emit(path)

    def set_can_train(self, can_train: bool, why_not: str = "") -> None:
        """Whether "Train on these images" can start a run now; ``why_not`` says what is
        missing when it cannot (no model, a run already going)."""
        self._train_button.setEnabled(can_train)
        self._next_label.setText(
            self.tr("Choose the head and the settings on the Train page, or start with them as they are.")
            if can_train else why_not
        )

    def is_scanning(self) -> bool:
        return self._scan_runner is not None and self._scan_runner.is_running()

    def class_count_items(self) -> dict[str, int]:
        """Class name → image count, as shown in the chart."""
        return dict(self._class_counts)

    def skipped_count(self) -> int:
        return self._skipped_tree.topLevelItemCount()

    def thumbnail_count(self) -> int:
        """Thumbnails decoded and on screen (placeholders not counted)."""
        return self._strips.loaded_count()

    def thumbnails_loading(self) -> bool:
        return self._thumbnails.is_busy()

    def error_message(self) -> str:
        """The inline error, or "" when none is shown."""
        return self._error_label.text() if not self._error_label.isHidden() else ""

    def summary_text(self) -> str:
        return self._summary_label.text()

    def imbalance_warning(self) -> str:
        return self._warning_label.text() if not self._warning_label.isHidden() else ""

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop scanning and thumbnail jobs and wait for them (window close)."""
        self._thumbnails.cancel()
        ok = True
        if self._scan_runner is not None:
            self._scan_runner.request_stop()
            ok = self._scan_runner.wait(timeout_ms)  # may deliver the scan's result, asking for thumbnails
        return self._thumbnails.close(timeout_ms) and ok

    # -- display ----------------------------------------------------------------------------

    def _show_dataset(self, info: DatasetInfo | None) -> None:
        self._thumbnails.cancel()
        if info is None:
            self._class_counts = {}
            self._stack.setCurrentIndex(0)
            self._path_label.setText(self.tr("No folder loaded"))
            self._strips.set_strips([], [], [])
            self._chart.set_counts([], [], set())
            self._skipped_tree.clear()
            self._update_skipped_header(0)
            return
        self._stack.setCurrentIndex(1)
        self._path_label.setText(info.root)
        self._path_label.setToolTip(info.root)
        names, counts = list(info.class_names), list(info.counts)
        self._class_counts = dict(zip(names, counts))
        self._summary_label.setText(_summary(info))

        small = self._show_imbalance(names, counts)
        self._chart.set_counts(names, counts, small)

        per_class: list[list[str]] = [[] for _ in names]
        for sample in info.samples:
            per_class[sample.label].append(sample.path)
        picks = [_spread(paths, THUMBNAILS_PER_CLASS) for paths in per_class]
        self._strips.set_strips(names, counts, picks)
        header = self._strip_view.verticalHeader()
        header.setMaximumWidth(self.fontMetrics().horizontalAdvance("x" * 18) + 12)
        self._thumbnails.load(self._strips.all_paths())

        self._skipped_tree.clear()
        root = Path(info.root)
        items = []
        for skipped in info.skipped:
            try:
                shown = str(Path(skipped.path).relative_to(root))
            except ValueError:
                shown = skipped.path
            item = QTreeWidgetItem([shown, skipped.reason])
            item.setToolTip(0, skipped.path)
            items.append(item)
        self._skipped_tree.addTopLevelItems(items)
        self._update_skipped_header(len(items))

    def _show_error(self, text: str, loose_images: Sequence[str] = ()) -> None:
        """The inline error ("" hides it), with the offer to try ``loose_images`` if any."""
        self._error_label.setText(text)
        self._error_label.setVisible(bool(text))
        self._loose_images = list(loose_images)
        self._try_images_button.setVisible(bool(self._loose_images))

    def _show_imbalance(self, names: list[str], counts: list[int]) -> set[int]:
        if not counts or min(counts) <= 0 or max(counts) / min(counts) <= IMBALANCE_RATIO:
            self._warning_label.hide()
            return set()
        top = max(counts)
        largest = names[counts.index(top)]
        small = sorted((i for i, c in enumerate(counts) if c * IMBALANCE_RATIO < top), key=lambda i: counts[i])
        named = ", ".join(f"'{names[i]}' ({counts[i]:,})" for i in small[:_MAX_NAMED_CLASSES])
        if len(small) > _MAX_NAMED_CLASSES:
            named += self.tr(" and %n more", "", len(small) - _MAX_NAMED_CLASSES)
        ratio = top / min(counts)
        self._warning_label.setText(
            self.tr(
                "Imbalanced classes: '{largest}' has {top:,} images, more than {k:g}× as many as "
                "{named} (largest/smallest = {ratio:.1f}). The model will lean towards the big "
                "classes; add images to the small ones, and judge it by per-class recall rather "
                "than accuracy."
            ).format(largest=largest, top=top, k=IMBALANCE_RATIO, named=named, ratio=ratio)
        )
        self._warning_label.show()
        return set(small)

    def _update_skipped_header(self, count: int) -> None:
        if count:
            self._skipped_button.setText(self.tr("Skipped files (%n)", "", count))
            self._skipped_button.setEnabled(True)
        else:
            self._skipped_button.setText(self.tr("No files skipped"))
            self._skipped_button.setChecked(False)
            self._skipped_button.setEnabled(False)

    # -- slots ------------------------------------------------------------------------------

    @Slot()
    def _on_choose_button_clicked(self) -> None:
        self.choose_folder()

    @Slot(bool)
    def _on_skipped_button_toggled(self, checked: bool) -> None:
        show = checked and self._skipped_tree.topLevelItemCount() > 0
        self._skipped_button.setArrowType(Qt.ArrowType.DownArrow if show else Qt.ArrowType.RightArrow)
        self._skipped_tree.setVisible(show)

    @Slot(object)
    def _on_scan_runner_eventEmitted(self, event: object) -> None:
        if self.sender() is not self._scan_runner:
            return
        if isinstance(event, _ScanProgress):
            total = max(event.total, 1)
            self._progress.setRange(0, total)
            self._progress.setValue(event.done)
            self._progress.setFormat(self.tr("Checking images: %v / %m"))
        elif isinstance(event, _ScanDone):
            self._dataset = event.info
            self._show_dataset(event.info)
            self.datasetChanged.emit(event.info)

    @Slot(str)
    def _on_scan_runner_failed(self, message: str) -> None:
        if self.sender() is not self._scan_runner:
            return
        text = message
        if self._dataset is not None:
            text += "\n" + self.tr("Still using the previously loaded folder, %1.").replace("%1", self._dataset.root)
            self._path_label.setText(self._dataset.root)
        error = self._scan_runner.error if self._scan_runner is not None else None
        self._show_error(text, error.images if isinstance(error, FlatImageFolderError) else ())
        self.scanFailed.emit(message)

    @Slot()
    def _on_try_images_button_clicked(self) -> None:
        self.tryImagesRequested.emit(list(self._loose_images))

    @Slot()
    def _on_scan_runner_finished(self) -> None:
        if self.sender() is self._scan_runner:
            self._progress.hide()
            self._scan_runner = None

    @Slot(object)
    def _on_thumbnails_thumbnailsReady(self, items: object) -> None:
        self._strips.add_thumbnails(items)  # type: ignore[arg-type]

    # -- drag and drop ----------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if _local_paths(event.mimeData()):
            event.acceptProposedAction()
            self._drag_active = True
            self.update()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802 - Qt override
        if _local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dragLeaveEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt override
        self._drag_active = False
        self.update()
        super().dragLeaveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        self._drag_active = False
        self.update()
        paths = _local_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        folders = [p for p in paths if os.path.isdir(p)]
        if folders:
            self.load_folder(folders[0])
            return
        message = self.tr(
            "{path} is a file, not a folder. Drop the folder that holds one subfolder per class."
        ).format(path=paths[0])
        self._show_error(message)
        self.scanFailed.emit(message)

    def paintEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt override
        super().paintEvent(event)
        if self._drag_active:
            painter = QPainter(self)
            pen = QPen(self.palette().color(QPalette.ColorRole.Highlight), 3, Qt.PenStyle.DashLine)
            painter.setPen(pen)
            painter.drawRoundedRect(self.rect().adjusted(2, 2, -2, -2), 6, 6)
            painter.end()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._strips.palette_changed()
        super().changeEvent(event)


# -- helpers -------------------------------------------------------------------------------------


def _summary(info: DatasetInfo) -> str:
    parts = [
        f"<b>{len(info.class_names):,} classes</b>",
        f"<b>{len(info.samples):,} images</b>",
    ]
    if info.size_summary is not None:
        parts.append(f"sizes {info.size_summary.describe()}")
    split = info.predefined_split
    if split is not None:
        parts.append(f"predefined split from train/ and val/: {len(split.train):,} train, {len(split.val):,} val")
    else:
        parts.append("no predefined split (a random, stratified one is drawn at training time)")
    if info.skipped:
        parts.append(f"{len(info.skipped):,} files skipped")
    return " · ".join(parts)


def _spread(paths: Sequence[str], k: int) -> list[str]:
    """Up to ``k`` paths spread evenly over ``paths`` (so not all from one subfolder)."""
    n = len(paths)
    if n <= k:
        return list(paths)
    return [paths[(i * n) // k] for i in range(k)]


def _elide(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _local_paths(mime) -> list[str]:  # noqa: ANN001
    if mime is None or not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile() and url.toLocalFile()]


def _titled(parent: QWidget, title: str, body: QWidget) -> QWidget:
    box = QWidget(parent)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(2)
    label = QLabel(f"<b>{title}</b>", box)
    label.setBuddy(body)
    layout.addWidget(label)
    layout.addWidget(body, 1)
    return box


def _message_label(parent: QWidget, name: str, *, error: bool) -> QLabel:
    label = QLabel(parent)
    label.setObjectName(name)
    label.setAccessibleName(parent.tr("Error") if error else parent.tr("Warning"))
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    _style_message(label, error=error)
    label.hide()
    return label


def _style_message(label: QLabel, *, error: bool) -> None:
    """A translucent tinted box: it blends onto whatever the window colour is, so it reads in
    light and dark palettes alike without recolouring on palette changes."""
    rgb = "220, 60, 60" if error else "230, 150, 0"
    label.setStyleSheet(
        f"QLabel#{label.objectName()} {{ background-color: rgba({rgb}, 0.16); "
        f"border: 1px solid rgba({rgb}, 0.55); border-radius: 4px; padding: 4px; }}"
    )
