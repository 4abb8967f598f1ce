"""Qt item model over core's immutable layer records, and a filter proxy for it.

The model is an adapter, not the source of truth: ``set_root`` takes a ``LayerRecord`` tree
built by ``headswap_gui.core.module_tree`` and wraps it once in light nodes that know their
parent and row. ``index()`` and ``parent()`` are then O(1), which keeps a 2,000-module model
(a big ViT or EfficientNet) responsive when the view expands everything.

Heads are what the user came to change, so they stand out (bold, tinted, an icon, a tooltip
that says how they were found); frozen layers are greyed so a partly frozen backbone reads at
a glance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields
from operator import attrgetter
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QGuiApplication,
    QIcon,
    QPainter,
    QPalette,
    QPen,
    QPixmap,
)

from headswap_gui.core.module_tree import LayerRecord

__all__ = [
    "COLUMNS",
    "change_row_filter",
    "LayerFilterProxyModel",
    "LayerTreeModel",
    "PATH_ROLE",
    "RECORD_ROLE",
    "SORT_ROLE",
]

RECORD_ROLE = int(Qt.ItemDataRole.UserRole) + 1
"""data() role returning the row's :class:`LayerRecord`."""
PATH_ROLE = int(Qt.ItemDataRole.UserRole) + 2
"""data() role returning the row's dotted module path ("" for the root)."""
SORT_ROLE = int(Qt.ItemDataRole.UserRole) + 3
"""data() role returning a sortable value (numbers as ints, not formatted text)."""

COLUMNS: tuple[str, ...] = ("Name", "Type", "Output shape", "Parameters", "Trainable")
NAME_COLUMN, TYPE_COLUMN, SHAPE_COLUMN, PARAMS_COLUMN, TRAINABLE_COLUMN = range(len(COLUMNS))
_NUMERIC_COLUMNS = (PARAMS_COLUMN, TRAINABLE_COLUMN)

# Amber at low alpha: blends into a light base as pale yellow and into a dark base as a warm
# brown, so the palette's own text colour stays readable in both schemes.
_HEAD_TINT = QColor(255, 179, 0, 70)
_INSIDE_HEAD_TINT = QColor(255, 179, 0, 28)
_ICON_COLOUR = QColor(230, 140, 0)

Index = QModelIndex | QPersistentModelIndex

_shown = attrgetter(*(f.name for f in fields(LayerRecord) if f.name != "children"))
"""What a row shows of its record, as a tuple (its children are rows of their own)."""


class _Node:
    """A record plus its place in the tree; the model's ``internalPointer``."""

    __slots__ = ("record", "parent", "row", "children")

    def __init__(self, record: LayerRecord, parent: _Node | None, row: int) -> None:
        self.record = record
        self.parent = parent
        self.row = row
        self.children: list[_Node] = []


_ROLE_WORDS = {"auxiliary": "aux"}


def _display_name(record: LayerRecord, is_root: bool) -> str:
    """A head other than the main one is named by its whole path and its role, e.g.
    "aux1.fc2 (aux head)": its own name ("fc2") does not say which branch it scores, and it is
    swapped with the main head, so the user must see which one it is."""
    if record.head_role and record.head_role != "main":
        return f"{record.path} ({_ROLE_WORDS.get(record.head_role, record.head_role)} head)"
    return record.type_name if is_root or not record.name else record.name


def _format_shape(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return ""
    return " × ".join(str(d) for d in shape) if shape else "scalar"


def _head_icon(role: str) -> QIcon:
    """A small painted dot: filled for the main head, a ring for auxiliary/distillation."""
    key = "main" if role == "main" else "other"
    cached = _ICON_CACHE.get(key)
    if cached is not None:
        return cached
    pixmap = QPixmap(16, 16)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(QPen(_ICON_COLOUR, 2))
    painter.setBrush(QBrush(_ICON_COLOUR) if key == "main" else Qt.BrushStyle.NoBrush)
    painter.drawEllipse(3, 3, 10, 10)
    painter.end()
    icon = QIcon(pixmap)
    _ICON_CACHE[key] = icon
    return icon


_ICON_CACHE: dict[str, QIcon] = {}


class LayerTreeModel(QAbstractItemModel):
    """Read-only tree of a model's modules: Name, Type, Output shape, Parameters, Trainable.

    The root record is the single top-level row, named by its type (e.g. "ResNet").
    """

    def __init__(self, root: LayerRecord | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._root: _Node | None = None
        self._by_path: dict[str, _Node] = {}
        self._heads: list[_Node] = []
        if root is not None:
            self.set_root(root)

    # -- public API -------------------------------------------------------------------------

    def root_record(self) -> LayerRecord | None:
        return self._root.record if self._root is not None else None

    def set_root(self, record: LayerRecord | None) -> None:
        """Show a new tree (or nothing). Views lose expansion and selection, as with any reset."""
        self.beginResetModel()
        self._root = None
        self._by_path = {}
        self._heads = []
        if record is not None:
            self._root = self._build(record)
        self.endResetModel()

    def update_records(self, record: LayerRecord) -> bool:
        """Show ``record`` in place of the current tree when both have the same modules in the
        same places (a run froze or unfroze layers, a head got new weights): no reset, so views
        keep their expansion, selection and scroll position, and ``dataChanged`` covers only the
        rows whose record changed (none: nothing is emitted). Returns False, changing nothing,
        when the modules differ (or no tree is shown): :meth:`set_root` is for that."""
        if self._root is None:
            return False
        pairs: list[tuple[_Node, LayerRecord]] = []
        stack = [(self._root, record)]
        while stack:
            node, new = stack.pop()
            if new.path != node.record.path or len(new.children) != len(node.children):
                return False
            pairs.append((node, new))
            stack.extend(zip(node.children, new.children))
        changed: dict[int, tuple[_Node | None, list[int]]] = {}  # id(parent) → (parent, changed rows)
        for node, new in pairs:
            if _shown(new) != _shown(node.record):
                changed.setdefault(id(node.parent), (node.parent, []))[1].append(node.row)
            node.record = new
        self._heads = [n for n in _walk(self._root) if n.record.head_role]
        last = len(COLUMNS) - 1
        for parent, rows in changed.values():
            siblings = parent.children if parent is not None else [self._root]
            first, final = min(rows), max(rows)
            self.dataChanged.emit(
                self.createIndex(first, 0, siblings[first]), self.createIndex(final, last, siblings[final])
            )
        return True

    def index_for_path(self, path: str) -> QModelIndex:
        """The Name-column index of the module at dotted ``path`` ("" = root); invalid if absent."""
        node = self._by_path.get(path)
        if node is None:
            return QModelIndex()
        return self.createIndex(node.row, 0, node)

    def head_indexes(self) -> list[QModelIndex]:
        """Name-column indexes of every detected head, in module order."""
        return [self.createIndex(node.row, 0, node) for node in self._heads]

    @staticmethod
    def record_at(index: Index) -> LayerRecord | None:
        """The record behind ``index`` (works for this model's own indexes only)."""
        if not index.isValid():
            return None
        node = index.internalPointer()
        return node.record if isinstance(node, _Node) else None

    # -- QAbstractItemModel -----------------------------------------------------------------

    def index(self, row: int, column: int, parent: Index = QModelIndex()) -> QModelIndex:
        if column < 0 or column >= len(COLUMNS) or row < 0:
            return QModelIndex()
        if not parent.isValid():
            if self._root is None or row != 0:
                return QModelIndex()
            return self.createIndex(0, column, self._root)
        if parent.column() != 0:
            return QModelIndex()
        node: _Node = parent.internalPointer()
        if row >= len(node.children):
            return QModelIndex()
        return self.createIndex(row, column, node.children[row])

    def parent(self, index: Index | None = None) -> Any:  # type: ignore[override]
        if index is None:  # QObject.parent()
            return super().parent()
        if not index.isValid():
            return QModelIndex()
        node: _Node = index.internalPointer()
        up = node.parent
        if up is None:
            return QModelIndex()
        return self.createIndex(up.row, 0, up)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802 - Qt API
        if not parent.isValid():
            return 1 if self._root is not None else 0
        if parent.column() != 0:
            return 0
        return len(parent.internalPointer().children)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802 - Qt API
        return len(COLUMNS)

    def hasChildren(self, parent: Index = QModelIndex()) -> bool:  # noqa: N802 - Qt API
        return self.rowCount(parent) > 0

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if not index.internalPointer().children:
            flags |= Qt.ItemFlag.ItemNeverHasChildren
        return flags

    def headerData(  # noqa: N802 - Qt API
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if role == Qt.ItemDataRole.TextAlignmentRole and section in _NUMERIC_COLUMNS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        node: _Node = index.internalPointer()
        record = node.record
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(node, column)
        if role == RECORD_ROLE:
            return record
        if role == PATH_ROLE:
            return record.path
        if role == SORT_ROLE:
            return self._sort_value(node, column)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in _NUMERIC_COLUMNS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.FontRole and record.head_role:
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.BackgroundRole:
            if record.head_role:
                return QBrush(_HEAD_TINT)
            if record.inside_head:
                return QBrush(_INSIDE_HEAD_TINT)
            return None
        if role == Qt.ItemDataRole.ForegroundRole and _is_frozen(record):
            return QGuiApplication.palette().brush(
                QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text
            )
        if role == Qt.ItemDataRole.DecorationRole and column == NAME_COLUMN and record.head_role:
            return _head_icon(record.head_role)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(record)
        if role == Qt.ItemDataRole.AccessibleDescriptionRole:
            return self._tooltip(record)
        return None

    # -- helpers ----------------------------------------------------------------------------

    def _build(self, record: LayerRecord) -> _Node:
        """Wrap the record tree in nodes, iteratively (deep models must not hit recursion)."""
        root = _Node(record, None, 0)
        stack = [root]
        while stack:
            node = stack.pop()
            self._by_path.setdefault(node.record.path, node)
            for row, child in enumerate(node.record.children):
                child_node = _Node(child, node, row)
                node.children.append(child_node)
            stack.extend(reversed(node.children))
        # Heads in module (depth-first) order, independent of the build order above.
        self._heads = [n for n in _walk(root) if n.record.head_role]
        return root

    @staticmethod
    def _display(node: _Node, column: int) -> str:
        record = node.record
        if column == NAME_COLUMN:
            return _display_name(record, node.parent is None)
        if column == TYPE_COLUMN:
            return record.type_name
        if column == SHAPE_COLUMN:
            return _format_shape(record.output_shape)
        if column == PARAMS_COLUMN:
            return f"{record.total_params:,}"
        if column == TRAINABLE_COLUMN:
            return f"{record.trainable_params:,}" if record.total_params else "—"
        return ""

    @staticmethod
    def _sort_value(node: _Node, column: int) -> Any:
        record = node.record
        if column == PARAMS_COLUMN:
            return record.total_params
        if column == TRAINABLE_COLUMN:
            return record.trainable_params
        if column == NAME_COLUMN:
            return node.row  # module order
        return LayerTreeModel._display(node, column)

    @staticmethod
    def _tooltip(record: LayerRecord) -> str | None:
        lines = []
        if record.head_role:
            found_by = record.head_found_by or "unknown"
            lines.append(f"Classifier head ({record.head_role}) — found by: {found_by}")
        elif record.inside_head:
            lines.append("Part of a classifier head")
        if _is_frozen(record):
            lines.append(f"frozen — none of its {record.total_params:,} parameters are trainable")
        elif 0 < record.trainable_params < record.total_params:
            lines.append(
                f"partly frozen — {record.trainable_params:,} of "
                f"{record.total_params:,} parameters are trainable"
            )
        if record.path:
            lines.append(record.path)
        return "\n".join(lines) if lines else None


def _is_frozen(record: LayerRecord) -> bool:
    return record.total_params > 0 and record.trainable_params == 0


def _walk(node: _Node) -> Iterator[_Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def change_row_filter(proxy: QSortFilterProxyModel, change: Callable[[], None]) -> None:
    """Apply ``change`` to what ``proxy`` filters rows by, and refilter: inside Qt ≥ 6.9's
    begin/endFilterChange (the older invalidate calls are deprecated there), else before
    ``invalidateRowsFilter``."""
    if hasattr(proxy, "beginFilterChange"):  # Qt >= 6.9
        proxy.beginFilterChange()
        change()
        proxy.endFilterChange(QSortFilterProxyModel.Direction.Rows)
    else:  # pragma: no cover - older Qt
        change()
        proxy.invalidateRowsFilter()


class LayerFilterProxyModel(QSortFilterProxyModel):
    """Shows modules whose name, type or path contains the filter text (any case).

    Ancestors of a match stay visible (recursive filtering), so a match is always shown in
    context. Typing "head" also finds detected heads by their role.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._needle = ""
        self.setRecursiveFilteringEnabled(True)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setSortRole(SORT_ROLE)

    def filter_text(self) -> str:
        return self._needle

    def set_filter_text(self, text: str) -> None:
        """Filter by a case-insensitive substring; empty shows everything."""
        needle = text.strip().casefold()
        if needle != self._needle:
            change_row_filter(self, lambda: setattr(self, "_needle", needle))

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:  # noqa: N802
        if not self._needle:
            return True
        model = self.sourceModel()
        if model is None:
            return False
        index = model.index(source_row, 0, source_parent)
        record = model.data(index, RECORD_ROLE)
        if not isinstance(record, LayerRecord):
            return False
        display = model.data(index, Qt.ItemDataRole.DisplayRole) or ""
        haystacks = (display, record.name, record.type_name, record.path)
        if any(self._needle in text.casefold() for text in haystacks):
            return True
        return bool(record.head_role) and self._needle in f"{record.head_role} head"
