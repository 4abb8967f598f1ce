"""The model side of the window: choose a model, see its layers, inspect one layer.

Three stacked parts:

- the chooser: a searchable list of every model in the zoo (``core.sources.zoo_sources``,
  ~1,450 names, listed on a worker thread because importing torchvision and timm takes
  seconds), each marked with a tick when its pretrained weights are on this machine
  (``core.sources.cached_weight_sources``, asked on the same thread right after), a filter
  to those, a weights choice, Load / Open file… buttons, recent models, and a busy bar;
- the layer tree: :class:`LayerTreeModel` behind a :class:`LayerFilterProxyModel` with a
  filter box; the heads are shown bold and tinted, and after a load the tree opens the
  branch of every head (aux heads too) and selects the main one;
- the details of the selected layer: path, type, output shape, parameter counts, and the
  statistics of its own weights, computed when the layer is selected.

The panel only *asks* for things (signals); the window loads models and runs commands.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (
    QItemSelection,
    QModelIndex,
    QObject,
    QPointF,
    QSortFilterProxyModel,
    QStringListModel,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QAction, QColor, QGuiApplication, QIcon, QKeySequence, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from headswap_gui.gui.jobs import ModelLease
from headswap_gui.gui.layer_tree_model import (
    PATH_ROLE,
    RECORD_ROLE,
    SHAPE_COLUMN,
    LayerFilterProxyModel,
    LayerTreeModel,
    change_row_filter,
)
from headswap_gui.gui.progress_bar import ProgressBar
from headswap_gui.gui.worker import GeneratorRunner

if TYPE_CHECKING:
    from torch import nn

    from headswap_gui.core.module_tree import LayerRecord
    from headswap_gui.gui.commands import ModelController

__all__ = ["CACHED_ROLE", "ModelPanel", "WEIGHTS_CHOICES", "ZooProxyModel", "pretrained_source", "weight_statistics"]

WEIGHTS_CHOICES = (
    ("pretrained", "Pretrained (from the local cache)"),
    ("download", "Pretrained — download if missing"),
    ("random", "Random initialisation"),
)
_STATS_DELAY_MS = 60  # coalesce statistics while arrowing through the tree
_EXPAND_ALL_LIMIT = 3000  # rows; beyond this a filter expands only the first levels


def pretrained_source(source: str, weights: str) -> str:
    """The source string that loads ``source`` with the chosen weights.

    ``torchvision:resnet50`` + pretrained → ``torchvision:resnet50@DEFAULT``; timm names get
    ``@pretrained``; anything with weights already named, files, folders and ``demo`` are
    left alone.
    """
    if weights == "random" or "@" in source:
        return source
    scheme, _, name = source.partition(":")
    if scheme == "torchvision" and name:
        return f"{source}@DEFAULT"
    if scheme == "timm" and name:
        return f"{source}@pretrained"
    return source


def weight_statistics(module: nn.Module) -> list[tuple[str, tuple[int, ...], dict[str, float]]] | str | None:
    """Mean/std/min/max of each of ``module``'s own parameters.

    ``None`` when it holds none, ``"meta"`` when the weights were never loaded.
    """
    params = list(module.named_parameters(recurse=False))
    if not params:
        return None
    if any(p.device.type == "meta" for _, p in params):
        return "meta"
    import torch

    rows = []
    with torch.no_grad():
        for name, param in params:
            values = param.detach().float().reshape(-1)
            if values.numel() == 0:
                continue
            stats = {
                "mean": float(values.mean()),
                "std": float(values.std()) if values.numel() > 1 else 0.0,
                "min": float(values.min()),
                "max": float(values.max()),
            }
            rows.append((name, tuple(param.shape), stats))
    return rows


def _zoo_events(stop: threading.Event) -> Iterator[object]:
    """The zoo's names (a tuple), then those with cached weights (a frozenset): the list is
    usable at once, the ticks follow a fraction of a second later."""
    from headswap_gui.core.sources import cached_weight_sources, zoo_sources

    sources = tuple(zoo_sources())
    yield sources
    if not stop.is_set():
        yield frozenset(cached_weight_sources(sources))


CACHED_ROLE = int(Qt.ItemDataRole.UserRole) + 1
"""Zoo list data() role: True when the entry's pretrained weights are on this machine."""
_CACHED_COLOUR = QColor(46, 160, 67)  # a mid green, readable on light and dark bases


@functools.cache
def _weights_icon(cached: bool) -> QIcon:
    """A green tick for an entry whose weights are cached, a blank of the same size for the
    rest, so every name starts at the same place."""
    pixmap = QPixmap(16, 16)
    pixmap.fill(Qt.GlobalColor.transparent)
    if cached:
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(_CACHED_COLOUR, 2.2, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin))
        painter.drawPolyline([QPointF(3, 8.5), QPointF(6.5, 12), QPointF(13, 4.5)])
        painter.end()
    return QIcon(pixmap)


class ZooProxyModel(QSortFilterProxyModel):
    """The zoo list, filtered by the search text (and, when asked, to cached entries), each
    entry ticked when its pretrained weights are on this machine: those load with
    "Pretrained (from the local cache)" and no network, the rest need "download if missing"."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._cached: frozenset[str] | None = None  # None until the caches were looked at
        self._cached_only = False
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)

    def cached_sources(self) -> frozenset[str] | None:
        """The entries with cached weights; None until the caches were looked at."""
        return self._cached

    def set_cached_sources(self, sources: Iterable[str]) -> None:
        change_row_filter(self, lambda: setattr(self, "_cached", frozenset(sources)))
        if self.rowCount():
            self.dataChanged.emit(self.index(0, 0), self.index(self.rowCount() - 1, 0))

    def set_cached_only(self, cached_only: bool) -> None:
        if cached_only != self._cached_only:
            change_row_filter(self, lambda: setattr(self, "_cached_only", cached_only))

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex) -> bool:  # noqa: N802 - Qt API
        if self._cached_only and self.sourceModel().index(source_row, 0, source_parent).data() not in (self._cached or ()):
            return False
        return super().filterAcceptsRow(source_row, source_parent)

    def data(self, index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: ANN001
        marks = (CACHED_ROLE, Qt.ItemDataRole.DecorationRole, Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.AccessibleDescriptionRole)
        if role not in marks or self._cached is None or not index.isValid():
            return super().data(index, role)
        cached = super().data(index) in self._cached
        if role == CACHED_ROLE:
            return cached
        if role == Qt.ItemDataRole.DecorationRole:
            return _weights_icon(cached)
        if cached:
            return self.tr("Pretrained weights are on this machine: they load without a network")
        return self.tr("No pretrained weights on this machine: choose “download if missing”, or random weights")


class LayerTreeProxyModel(LayerFilterProxyModel):
    """The filter proxy, showing output shapes per image: the tracing batch is not the user's."""

    def data(self, index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: ANN001
        if role == Qt.ItemDataRole.DisplayRole and index.column() == SHAPE_COLUMN:
            record = super().data(index, RECORD_ROLE)
            if record is not None:
                return format_shape(record.output_shape)
        return super().data(index, role)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if role == Qt.ItemDataRole.ToolTipRole and orientation == Qt.Orientation.Horizontal and section == SHAPE_COLUMN:
            return self.tr("Output shape for one image (from a dummy forward pass)")
        return super().headerData(section, orientation, role)


def format_shape(shape: tuple[int, ...] | None) -> str:
    """``(2, 32, 112, 112)`` from the two-image trace → "32 × 112 × 112" (per image)."""
    if shape is None:
        return ""
    per_image = shape[1:]
    return " × ".join(str(d) for d in per_image) if per_image else "scalar"


class ModelPanel(QWidget):
    """Model chooser, layer tree and layer details over a :class:`ModelController`.

    Signals: ``loadRequested(str source, bool download)``, ``openFileRequested()``,
    ``useAsHeadRequested(str path)``, ``replaceHeadRequested()``, ``zooLoaded(int count)``.
    """

    loadRequested = Signal(str, bool)
    openFileRequested = Signal()
    useAsHeadRequested = Signal(str)
    replaceHeadRequested = Signal()
    zooLoaded = Signal(int)
    selectedLayerChanged = Signal(str)

    def __init__(self, controller: ModelController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelPanel")
        self.setAccessibleName(self.tr("Model"))
        self._controller = controller
        self._zoo_runner: GeneratorRunner | None = None
        self._zoo_count = 0
        self._editing_enabled = True
        self._training = False
        self.model_lease: ModelLease | None = None  # set by the window: statistics read the model only when free
        self._focus_head = True
        self._new_model = True
        self._stats_path: str | None = None
        self._stats_timer = QTimer(self)
        self._stats_timer.setSingleShot(True)
        self._stats_timer.setInterval(_STATS_DELAY_MS)
        self._stats_timer.timeout.connect(self._on_stats_timer_timeout)
        self._build()
        controller.modelChanged.connect(self._on_controller_modelChanged)
        controller.headsChanged.connect(self._on_controller_headsChanged)
        controller.treeChanged.connect(self._on_controller_treeChanged)

    # -- construction -----------------------------------------------------------------------

    def _build(self) -> None:
        # chooser
        self.search_edit = QLineEdit()
        self.search_edit.setObjectName("modelSearchEdit")
        self.search_edit.setAccessibleName(self.tr("Search models"))
        self.search_edit.setPlaceholderText(self.tr("Search models, or type a source and press Enter"))
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.setAcceptDrops(False)
        self.zoo_model = QStringListModel(["demo"], self)
        self.zoo_proxy = ZooProxyModel(self)
        self.zoo_proxy.setSourceModel(self.zoo_model)
        self.cached_only_check = QCheckBox(self.tr("Cached"))
        self.cached_only_check.setObjectName("modelZooCachedOnlyCheck")
        self.cached_only_check.setAccessibleName(self.tr("Only models with cached weights"))
        self.cached_only_check.setToolTip(self.tr(
            "List only the models whose pretrained weights are already on this machine (ticked); "
            "they load without a network"
        ))
        self.cached_only_check.setIcon(_weights_icon(True))
        self.cached_only_check.setEnabled(False)  # until the caches were looked at
        self.zoo_view = QListView()
        self.zoo_view.setObjectName("modelZooList")
        self.zoo_view.setAccessibleName(self.tr("Model zoo"))
        self.zoo_view.setModel(self.zoo_proxy)
        self.zoo_view.setUniformItemSizes(True)
        self.zoo_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.zoo_view.setMinimumHeight(72)
        self.zoo_view.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        self.zoo_count_label = QLabel(self.tr("Listing the model zoo…"))
        self.zoo_count_label.setObjectName("modelZooCount")
        self.zoo_count_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        self.weights_combo = QComboBox()
        self.weights_combo.setObjectName("modelWeightsCombo")
        self.weights_combo.setAccessibleName(self.tr("Weights"))
        for key, label in WEIGHTS_CHOICES:
            self.weights_combo.addItem(self.tr(label), key)
        self.weights_combo.setToolTip(self.tr(
            "Pretrained weights come from the local torch/timm cache; choose 'download if missing' "
            "to fetch them (needs a network connection). The demo model is always available offline."
        ))
        self.load_button = QPushButton(self.tr("Load"))
        self.load_button.setObjectName("modelLoadButton")
        self.load_button.setAccessibleName(self.tr("Load the selected model"))
        self.load_button.setDefault(True)
        self.open_button = QPushButton(self.tr("Open file…"))
        self.open_button.setObjectName("modelOpenButton")
        self.open_button.setAccessibleName(self.tr("Open a model file or folder"))
        self.open_button.setToolTip(self.tr("Open a .safetensors/.pt/.pth file or a headswap model folder (Ctrl+O)"))
        self.recent_button = QToolButton()
        self.recent_button.setObjectName("modelRecentButton")
        self.recent_button.setAccessibleName(self.tr("Recent models"))
        self.recent_button.setText(self.tr("Recent"))
        self.recent_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.recent_menu = QMenu(self.recent_button)
        self.recent_menu.setObjectName("modelRecentMenu")
        self.recent_button.setMenu(self.recent_menu)
        self.recent_button.setEnabled(False)

        self.busy_bar = ProgressBar()
        self.busy_bar.setObjectName("modelBusyBar")
        self.busy_bar.setAccessibleName(self.tr("Model loading progress"))
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setTextVisible(False)
        self.busy_bar.setMaximumHeight(6)
        self.busy_bar.hide()
        self.status_label = QLabel(self.tr("No model loaded. Pick one from the list, or open a file."))
        self.status_label.setObjectName("modelStatusLabel")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # A splitter does not ask a wrapped label how tall it gets at its width; reserve two
        # lines, or a squeezed Model box draws the Weights row over the model list.
        self.status_label.setMinimumHeight(2 * self.status_label.fontMetrics().lineSpacing() + 4)

        chooser = QGroupBox(self.tr("Model"))
        chooser.setObjectName("modelChooserBox")
        chooser_layout = QVBoxLayout(chooser)
        search_row = QHBoxLayout()
        search_row.addWidget(self.search_edit, 1)
        search_row.addWidget(self.cached_only_check)
        chooser_layout.addLayout(search_row)
        chooser_layout.addWidget(self.zoo_view, 1)
        weights_row = QHBoxLayout()
        weights_label = QLabel(self.tr("Weights:"))
        weights_label.setBuddy(self.weights_combo)
        weights_row.addWidget(weights_label)
        weights_row.addWidget(self.weights_combo, 1)
        chooser_layout.addLayout(weights_row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.zoo_count_label, 1)
        buttons.addWidget(self.recent_button)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.load_button)
        chooser_layout.addLayout(buttons)
        chooser_layout.addWidget(self.busy_bar)
        chooser_layout.addWidget(self.status_label)

        # layer tree
        self.filter_edit = QLineEdit()
        self.filter_edit.setObjectName("layerFilterEdit")
        self.filter_edit.setAccessibleName(self.tr("Filter layers"))
        self.filter_edit.setPlaceholderText(self.tr("Filter layers by name, type or path (try “head”)"))
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.setAcceptDrops(False)
        self.tree_model = LayerTreeModel(parent=self)
        self.tree_proxy = LayerTreeProxyModel(self)
        self.tree_proxy.setSourceModel(self.tree_model)
        self.tree_view = QTreeView()
        self.tree_view.setObjectName("layerTree")
        self.tree_view.setAccessibleName(self.tr("Layers of the model"))
        self.tree_view.setModel(self.tree_proxy)
        self.tree_view.setUniformRowHeights(True)
        self.tree_view.setAlternatingRowColors(True)
        self.tree_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree_view.setExpandsOnDoubleClick(True)
        self.tree_view.setAnimated(False)
        header = self.tree_view.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        for column in range(1, self.tree_model.columnCount()):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setMinimumSectionSize(40)
        header.resizeSection(0, 160)
        tree_box = QGroupBox(self.tr("Layers"))
        tree_box.setObjectName("layerTreeBox")
        tree_layout = QVBoxLayout(tree_box)
        tree_layout.addWidget(self.filter_edit)
        tree_layout.addWidget(self.tree_view, 1)

        # details
        self.details_box = QGroupBox(self.tr("Selected layer"))
        self.details_box.setObjectName("layerDetailsBox")
        details_scroll = QScrollArea()
        details_scroll.setObjectName("layerDetailsScroll")
        details_scroll.setAccessibleName(self.tr("Selected layer details"))
        details_scroll.setWidgetResizable(True)
        details_scroll.setFrameShape(QFrame.Shape.NoFrame)
        details_body = QWidget()
        details_scroll.setWidget(details_body)
        QVBoxLayout(self.details_box).addWidget(details_scroll)
        self.details_box.layout().setContentsMargins(4, 4, 4, 4)
        form = QFormLayout(details_body)
        form.setContentsMargins(4, 4, 4, 4)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.detail_labels: dict[str, QLabel] = {}
        for key, title in (
            ("path", self.tr("Path:")),
            ("type", self.tr("Type:")),
            ("shape", self.tr("Output shape:")),
            ("params", self.tr("Parameters:")),
            ("head", self.tr("Head:")),
            ("stats", self.tr("Weights:")),
        ):
            label = QLabel("—")
            label.setObjectName(f"layerDetail_{key}")
            label.setAccessibleName(title.rstrip(":"))
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            form.addRow(title, label)
            self.detail_labels[key] = label

        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("modelPanelSplitter")
        self.splitter.addWidget(chooser)
        self.splitter.addWidget(tree_box)
        self.splitter.addWidget(self.details_box)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 6)
        self.splitter.setStretchFactor(2, 2)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([290, 380, 230])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)

        # actions
        self.use_as_head_action = QAction(self.tr("Use as head"), self)
        self.use_as_head_action.setObjectName("useAsHeadAction")
        self.use_as_head_action.setToolTip(self.tr("Treat the selected layer as the classifier head"))
        self.use_as_head_action.triggered.connect(self._on_use_as_head_action_triggered)
        self.copy_path_action = QAction(self.tr("Copy path"), self)
        self.copy_path_action.setObjectName("copyLayerPathAction")
        self.copy_path_action.setShortcut(QKeySequence.StandardKey.Copy)
        self.copy_path_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        self.copy_path_action.triggered.connect(self._on_copy_path_action_triggered)
        self.tree_view.addAction(self.copy_path_action)
        self.show_head_action = QAction(self.tr("Show the head"), self)
        self.show_head_action.setObjectName("showHeadAction")
        self.show_head_action.triggered.connect(self.focus_head)
        self.expand_all_action = QAction(self.tr("Expand all"), self)
        self.expand_all_action.triggered.connect(self.tree_view.expandAll)
        self.collapse_all_action = QAction(self.tr("Collapse all"), self)
        self.collapse_all_action.triggered.connect(self.tree_view.collapseAll)

        # connections
        self.search_edit.textChanged.connect(self._on_search_edit_textChanged)
        self.search_edit.returnPressed.connect(self._on_search_edit_returnPressed)
        self.cached_only_check.toggled.connect(self._on_cached_only_check_toggled)
        self.zoo_view.doubleClicked.connect(self._on_zoo_view_doubleClicked)
        self.load_button.clicked.connect(self._on_load_button_clicked)
        self.open_button.clicked.connect(self.openFileRequested)
        self.filter_edit.textChanged.connect(self._on_filter_edit_textChanged)
        self.tree_view.customContextMenuRequested.connect(self._on_tree_view_customContextMenuRequested)
        self.tree_view.selectionModel().selectionChanged.connect(self._on_tree_selection_selectionChanged)
        self.recent_menu.triggered.connect(self._on_recent_menu_triggered)
        self.zoo_view.setCurrentIndex(self.zoo_proxy.index(0, 0))

    # -- public API -------------------------------------------------------------------------

    def populate_zoo(self) -> None:
        """List every model of the zoo on a worker thread (once)."""
        if self._zoo_runner is not None:
            return
        runner = GeneratorRunner(_zoo_events, stop_grace_s=0.0)
        runner.eventEmitted.connect(self._on_zoo_runner_eventEmitted)
        runner.failed.connect(self._on_zoo_runner_failed)
        self._zoo_runner = runner
        runner.start()

    def zoo_count(self) -> int:
        return self._zoo_count

    def zoo_sources(self) -> list[str]:
        return list(self.zoo_model.stringList())

    def selected_source(self) -> str | None:
        index = self.zoo_view.currentIndex()
        if not index.isValid():
            return None
        return str(index.data())

    def select_source(self, source: str) -> bool:
        """Make ``source`` the current item of the zoo list (clearing the search and the
        cached-only filter if needed)."""
        for attempt in range(2):
            matches = self.zoo_proxy.match(
                self.zoo_proxy.index(0, 0), Qt.ItemDataRole.DisplayRole, source, 1,
                Qt.MatchFlag.MatchExactly,
            )
            if matches:
                self.zoo_view.setCurrentIndex(matches[0])
                self.zoo_view.scrollTo(matches[0])
                return True
            if attempt == 0 and (self.search_edit.text() or self.cached_only_check.isChecked()):
                self.search_edit.clear()
                self.cached_only_check.setChecked(False)
        return False

    def weights_choice(self) -> str:
        return str(self.weights_combo.currentData())

    def set_weights_choice(self, key: str) -> None:
        index = self.weights_combo.findData(key)
        if index >= 0:
            self.weights_combo.setCurrentIndex(index)

    def set_recent_models(self, sources: list[str]) -> None:
        self.recent_menu.clear()
        for source in sources:
            action = self.recent_menu.addAction(source)
            action.setData(source)
        self.recent_button.setEnabled(bool(sources) and self._editing_enabled)

    def set_busy(self, text: str | None) -> None:
        """Show the busy bar with ``text``; ``None`` hides it."""
        self.busy_bar.setVisible(text is not None)
        if text is not None:
            self.status_label.setText(text)
        self.load_button.setEnabled(text is None and self._editing_enabled)

    def is_busy(self) -> bool:
        return not self.busy_bar.isHidden()

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def set_editing_enabled(self, enabled: bool) -> None:
        """Training owns the model: loading and head changes wait."""
        self._editing_enabled = enabled
        self.load_button.setEnabled(enabled and not self.is_busy())
        self.open_button.setEnabled(enabled)
        self.recent_button.setEnabled(enabled and bool(self.recent_menu.actions()))
        self.use_as_head_action.setEnabled(enabled)

    def set_training(self, training: bool) -> None:
        """A run trains the weights now: the statistics say so (and are refreshed)."""
        if training != self._training:
            self._training = training
            if self._stats_path is not None:
                self._stats_timer.start()

    def selected_path(self) -> str | None:
        index = self.tree_view.currentIndex()
        if not index.isValid():
            return None
        return self.tree_proxy.data(index.siblingAtColumn(0), PATH_ROLE)

    def proxy_index_for_path(self, path: str) -> QModelIndex:
        source = self.tree_model.index_for_path(path)
        return self.tree_proxy.mapFromSource(source) if source.isValid() else QModelIndex()

    def select_layer(self, path: str, *, center: bool = True) -> bool:
        """Expand down to ``path``, select it and scroll it into view."""
        index = self.proxy_index_for_path(path)
        if not index.isValid():
            return False
        self._expand_ancestors(index)
        self.tree_view.setCurrentIndex(index)
        self.tree_view.selectionModel().select(
            index, self.tree_view.selectionModel().SelectionFlag.ClearAndSelect
            | self.tree_view.selectionModel().SelectionFlag.Rows,
        )
        hint = QAbstractItemView.ScrollHint.PositionAtCenter if center else QAbstractItemView.ScrollHint.EnsureVisible
        self.tree_view.scrollTo(index, hint)
        # Once more after the layout settles (a freshly reset view may not know its rows yet).
        QTimer.singleShot(0, self, lambda: self._scroll_to_path(path, hint))
        return True

    def focus_head(self) -> bool:
        """Open the branch of every head and select the main one: an aux head (GoogLeNet's
        ``aux1.fc2``) is swapped with the main head, so it must not hide in a closed branch."""
        for index in self.tree_model.head_indexes():
            self._expand_ancestors(self.tree_proxy.mapFromSource(index))
        head = self._controller.main_head()
        return self.select_layer(head.path) if head is not None else False

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        if self._zoo_runner is not None and self._zoo_runner.is_running():
            self._zoo_runner.request_stop()
            return self._zoo_runner.wait(timeout_ms)
        return True

    # -- tree state -------------------------------------------------------------------------

    def _fit_name_column(self) -> None:
        """Name column as wide as the open rows need, within reason."""
        self.tree_view.resizeColumnToContents(0)
        width = self.tree_view.columnWidth(0)
        self.tree_view.setColumnWidth(0, max(110, min(width + 4, 260)))

    def _expand_ancestors(self, index: QModelIndex) -> None:
        parent = index.parent()
        while parent.isValid():
            self.tree_view.expand(parent)
            parent = parent.parent()

    def _scroll_to_path(self, path: str, hint: QAbstractItemView.ScrollHint) -> None:
        index = self.proxy_index_for_path(path)
        if index.isValid():
            self.tree_view.scrollTo(index, hint)

    def _expanded_paths(self) -> set[str]:
        paths: set[str] = set()
        stack = [QModelIndex()]
        while stack:
            parent = stack.pop()
            for row in range(self.tree_proxy.rowCount(parent)):
                index = self.tree_proxy.index(row, 0, parent)
                if self.tree_view.isExpanded(index):
                    paths.add(self.tree_proxy.data(index, PATH_ROLE))
                    stack.append(index)
        return paths

    def _restore_expanded(self, paths: set[str]) -> None:
        for path in sorted(paths, key=lambda p: (p.count("."), p)):
            index = self.proxy_index_for_path(path)
            if index.isValid():
                self.tree_view.expand(index)

    # -- details ----------------------------------------------------------------------------

    def _show_details(self, record: LayerRecord | None) -> None:
        labels = self.detail_labels
        if record is None:
            for label in labels.values():
                label.setText("—")
            self._stats_path = None
            return
        labels["path"].setText(record.path or self.tr("(the whole model)"))
        labels["type"].setText(record.description or record.type_name)
        labels["shape"].setText(
            self.tr("{shape} per image").format(shape=format_shape(record.output_shape))
            if record.output_shape else self.tr("not traced")
        )
        frozen = record.total_params - record.trainable_params
        params = self.tr("{own} own, {total} total, {trainable} trainable").format(
            own=f"{record.own_params:,}", total=f"{record.total_params:,}",
            trainable=f"{record.trainable_params:,}",
        )
        if record.total_params and frozen:
            params += self.tr(" ({frozen} frozen)").format(frozen=f"{frozen:,}")
        labels["params"].setText(params)
        if record.head_role:
            labels["head"].setText(
                self.tr("{role} head — found by: {how}").format(role=record.head_role, how=record.head_found_by)
            )
        elif record.inside_head:
            labels["head"].setText(self.tr("part of a head"))
        else:
            labels["head"].setText(self.tr("no"))
        labels["stats"].setText(self.tr("…") if record.own_params else self.tr("no parameters of its own"))
        self._stats_path = record.path
        if record.own_params:
            self._stats_timer.start()

    @Slot()
    def _on_stats_timer_timeout(self) -> None:
        self.compute_statistics()

    def compute_statistics(self) -> str:
        """Fill in the weight statistics of the selected layer now; returns the text shown."""
        label = self.detail_labels["stats"]
        loaded = self._controller.loaded
        path = self._stats_path
        if loaded is None or path is None:
            return label.text()
        try:
            module = loaded.model.get_submodule(path) if path else loaded.model
        except AttributeError:
            label.setText("—")
            return label.text()
        if self.model_lease is None:
            stats = weight_statistics(module)
        else:
            with self.model_lease.held("weight statistics", timeout_s=0) as free:
                stats = weight_statistics(module) if free else "busy"
        if stats == "busy":
            text = self.tr("shown when the model is free (a job is using it: {job})").format(
                job=self.model_lease.holder or "…"
            )
        elif stats is None:
            text = self.tr("no parameters of its own")
        elif stats == "meta":
            text = self.tr("not loaded (structure only: the weights were never allocated)")
        else:
            lines = []
            for name, shape, values in stats:
                dims = "×".join(str(d) for d in shape)
                lines.append(
                    f"<b>{name}</b> ({dims}): mean {values['mean']:.4g}, std {values['std']:.4g}, "
                    f"min {values['min']:.4g}, max {values['max']:.4g}"
                )
            text = "<br>".join(lines)
        label.setText(text)
        return text

    # -- slots ------------------------------------------------------------------------------

    @Slot(object)
    def _on_zoo_runner_eventEmitted(self, sources: object) -> None:
        if isinstance(sources, frozenset):  # the entries with cached weights, after the names
            self._set_cached_sources(sources)
            return
        names = list(sources)  # type: ignore[arg-type]
        current = self.selected_source()
        self.zoo_model.setStringList(names)
        self._zoo_count = len(names)
        self.zoo_count_label.setText(self.tr("{n} models").format(n=f"{len(names):,}"))
        self.search_edit.setPlaceholderText(
            self.tr("Search {n} models (e.g. resnet50, vit), or type a source and press Enter").format(
                n=f"{len(names):,}"
            )
        )
        if current:
            self.select_source(current)
        self.zooLoaded.emit(len(names))

    def _set_cached_sources(self, sources: frozenset[str]) -> None:
        self.zoo_proxy.set_cached_sources(sources)
        self.cached_only_check.setEnabled(True)
        # Short on the row (it shares it with three buttons in a narrow pane), whole in the tip.
        self.cached_only_check.setText(self.tr("Cached ({cached})").format(cached=f"{len(sources):,}"))
        self.zoo_count_label.setToolTip(self.tr("{n} models, {cached} with cached weights").format(
            n=f"{self._zoo_count:,}", cached=f"{len(sources):,}"))

    def _keep_a_current_source(self) -> None:
        """After the list was filtered, Load and Enter still have an entry to act on."""
        if self.zoo_proxy.rowCount() and not self.zoo_view.currentIndex().isValid():
            self.zoo_view.setCurrentIndex(self.zoo_proxy.index(0, 0))

    @Slot(bool)
    def _on_cached_only_check_toggled(self, checked: bool) -> None:
        self.zoo_proxy.set_cached_only(checked)
        self._keep_a_current_source()

    @Slot(str)
    def _on_zoo_runner_failed(self, message: str) -> None:
        self.zoo_count_label.setText(self.tr("could not list the zoo"))
        self.zoo_count_label.setToolTip(message)

    @Slot(str)
    def _on_search_edit_textChanged(self, text: str) -> None:
        self.zoo_proxy.setFilterFixedString(text.strip())
        self._keep_a_current_source()

    @Slot()
    def _on_search_edit_returnPressed(self) -> None:
        text = self.search_edit.text().strip()
        if text and self.zoo_proxy.rowCount() == 0:
            self._request_load(text)  # a file, folder or source string the zoo does not list
        else:
            self._on_load_button_clicked()

    @Slot(QModelIndex)
    def _on_zoo_view_doubleClicked(self, index: QModelIndex) -> None:
        if index.isValid() and self._editing_enabled and not self.is_busy():
            self._request_load(str(index.data()))

    @Slot()
    def _on_load_button_clicked(self) -> None:
        source = self.selected_source()
        if source:
            self._request_load(source)

    def _request_load(self, source: str) -> None:
        if not self._editing_enabled:
            return
        weights = self.weights_choice()
        self.loadRequested.emit(pretrained_source(source, weights), weights == "download")

    @Slot(QAction)
    def _on_recent_menu_triggered(self, action: QAction) -> None:
        source = action.data()
        if source and self._editing_enabled:
            self.loadRequested.emit(str(source), False)

    @Slot(str)
    def _on_filter_edit_textChanged(self, text: str) -> None:
        selected = self.selected_path()
        self.tree_proxy.set_filter_text(text)
        if text.strip():
            root = self.tree_model.root_record()
            if root is not None and sum(1 for _ in root.walk()) <= _EXPAND_ALL_LIMIT:
                self.tree_view.expandAll()
            else:
                self.tree_view.expandToDepth(2)
        if selected is not None and self.proxy_index_for_path(selected).isValid():
            self.select_layer(selected, center=False)

    @Slot(QItemSelection, QItemSelection)
    def _on_tree_selection_selectionChanged(self, _selected: QItemSelection, _deselected: QItemSelection) -> None:
        indexes = self.tree_view.selectionModel().selectedRows(0)
        record = None
        if indexes:
            record = self.tree_model.record_at(self.tree_proxy.mapToSource(indexes[0]))
        self._show_details(record)
        self.selectedLayerChanged.emit(record.path if record is not None else "")

    @Slot()
    def _on_tree_view_customContextMenuRequested(self, position) -> None:  # noqa: ANN001
        index = self.tree_view.indexAt(position)
        menu = QMenu(self)
        menu.setObjectName("layerContextMenu")
        if index.isValid():
            self.tree_view.setCurrentIndex(index)
            path = self.selected_path()
            self.use_as_head_action.setEnabled(self._editing_enabled and bool(path))
            menu.addAction(self.use_as_head_action)
            replace = menu.addAction(self.tr("Replace head…"))
            replace.setEnabled(self._editing_enabled and bool(self._controller.heads))
            replace.triggered.connect(self.replaceHeadRequested)
            menu.addSeparator()
            menu.addAction(self.copy_path_action)
        menu.addAction(self.show_head_action)
        menu.addSeparator()
        menu.addAction(self.expand_all_action)
        menu.addAction(self.collapse_all_action)
        menu.popup(self.tree_view.viewport().mapToGlobal(position))

    @Slot()
    def _on_use_as_head_action_triggered(self) -> None:
        path = self.selected_path()
        if path and self._editing_enabled:
            self.useAsHeadRequested.emit(path)

    @Slot()
    def _on_copy_path_action_triggered(self) -> None:
        path = self.selected_path()
        if path is not None:
            QGuiApplication.clipboard().setText(path)

    @Slot(object)
    def _on_controller_modelChanged(self, loaded: Any) -> None:
        self._focus_head = True
        self._new_model = True
        self.filter_edit.blockSignals(True)
        self.filter_edit.clear()
        self.tree_proxy.set_filter_text("")
        self.filter_edit.blockSignals(False)
        if loaded is None:
            self.status_label.setText(self.tr("No model loaded."))
            return
        known = self.zoo_proxy.cached_sources()
        if "@" in loaded.source and known is not None:
            # Pretrained weights were loaded, perhaps downloaded just now: the tick follows.
            from headswap_gui.core.sources import cached_weight_sources

            self._set_cached_sources(known | cached_weight_sources([loaded.source.partition("@")[0]]))
        text = f"<b>{loaded.source}</b> — {loaded.parameter_count:,} parameters; weights: {loaded.weights}"
        if loaded.structure_only:
            text += "<br>" + self.tr("Structure only: weights not loaded.")
        for note in loaded.notes:
            text += f"<br>{note}"
        self.status_label.setText(text)

    @Slot(object)
    def _on_controller_headsChanged(self, _heads: object) -> None:
        self._focus_head = True

    @Slot(object)
    def _on_controller_treeChanged(self, record: LayerRecord | None) -> None:
        focus_head = self._focus_head
        self._focus_head = False
        if not self._new_model and record is not None and self.tree_model.update_records(record):
            # The same modules (a run froze the backbone, a head was retrained): updated in
            # place, which keeps the view as the user left it and costs no reset, re-expansion
            # or re-selection on the GUI thread as a run starts.
            selected = self.selected_path()
            if selected is not None:
                self._show_details(self.tree_model.record_at(self.tree_model.index_for_path(selected)))
            if focus_head:
                self.focus_head()
            return
        expanded = set() if self._new_model else self._expanded_paths()
        new_model, self._new_model = self._new_model, False
        selected = self.selected_path()
        scroll = self.tree_view.verticalScrollBar().value()
        self.tree_model.set_root(record)
        if record is None:
            self._show_details(None)
            return
        root_index = self.tree_proxy.index(0, 0)
        self.tree_view.expand(root_index)
        self._restore_expanded(expanded)
        if focus_head and self.focus_head():
            if new_model:
                self._fit_name_column()
            return
        if selected is not None and self.proxy_index_for_path(selected).isValid():
            index = self.proxy_index_for_path(selected)
            self.tree_view.setCurrentIndex(index)
            self.tree_view.verticalScrollBar().setValue(scroll)
        elif not self.focus_head():
            self.tree_view.setCurrentIndex(root_index)
