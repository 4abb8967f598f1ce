"""The "Replace head" dialog: classes, head design, and a live preview of old vs new head.

The preview builds the new head with ``core.heads.build_head`` on the ``meta`` device (no
memory, no random init) and counts it with ``core.heads.count_head_params``, so what the
dialog shows is exactly what the swap will install. The dialog only *asks*; the window turns
the answer into an undoable :class:`~headswap_gui.gui.commands.SwapHeadCommand`.

Tests replace :meth:`HeadDialog.ask` with a function that returns a :class:`HeadChoice`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from headswap_gui.core.module_tree import describe_layer

if TYPE_CHECKING:
    from torch import nn

    from headswap_gui.core.heads import HeadInfo, HeadSpec

__all__ = ["HeadChoice", "HeadDialog", "describe_layers", "parse_hidden_sizes"]

_MAX_CLASSES = 100_000


@dataclass(frozen=True)
class HeadChoice:
    """What the user chose: the design, how many classes, and their names."""

    spec: Any  # HeadSpec
    num_classes: int
    class_names: tuple[str, ...]


def parse_hidden_sizes(text: str) -> tuple[int, ...]:
    """"512, 256" → (512, 256); raises ValueError with a message for people."""
    parts = [p for p in re.split(r"[,\s;x×]+", text.strip()) if p]
    if not parts:
        raise ValueError("give at least one hidden size, e.g. 512 or 512,256")
    sizes = []
    for part in parts:
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"hidden size {part!r} is not a whole number ≥ 1")
        sizes.append(int(part))
    return tuple(sizes)


def describe_layers(module: nn.Module) -> list[tuple[str, str, int]]:
    """(name, description, parameters) for the leaf layers of a head, in order."""
    rows = []
    leaves = [(name, sub) for name, sub in module.named_modules() if not any(True for _ in sub.children())]
    for name, sub in leaves:
        params = sum(p.numel() for p in sub.parameters(recurse=False))
        rows.append((name or type(module).__name__, describe_layer(sub), params))
    return rows


class HeadDialog(QDialog):
    """Choose the new head: number of classes, class names, Linear or MLP design.

    ``heads`` are the model's detected heads (the main one first is not required);
    ``old_modules`` maps head paths to the modules now installed (for the "current" side).
    """

    choiceChanged = Signal(object)  # HeadChoice or None when the form is invalid

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        heads: Sequence[HeadInfo] = (),
        old_modules: dict[str, nn.Module] | None = None,
        num_classes: int = 2,
        class_names: Sequence[str] | None = None,
        spec: HeadSpec | None = None,
        dataset_note: str = "",
    ) -> None:
        super().__init__(parent)
        from headswap_gui.core.heads import ACTIVATIONS, NORMS, HeadSpec

        self.setObjectName("headDialog")
        self.setAccessibleName(self.tr("Replace head"))
        self.setWindowTitle(self.tr("Replace classifier head"))
        self._heads = list(heads)
        self._old_modules = dict(old_modules or {})
        self._choice: HeadChoice | None = None
        spec = spec or HeadSpec()

        # -- classes --
        self.classes_spin = QSpinBox()
        self.classes_spin.setObjectName("headClassesSpin")
        self.classes_spin.setAccessibleName(self.tr("Number of classes"))
        self.classes_spin.setRange(1, _MAX_CLASSES)
        self.classes_spin.setValue(max(1, int(num_classes)))
        self.names_list = QListWidget()
        self.names_list.setObjectName("headClassNamesList")
        self.names_list.setAccessibleName(self.tr("Class names"))
        self.names_list.setToolTip(self.tr("Double-click a name to edit it; output i of the model is row i"))
        self.names_list.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
            | QAbstractItemView.EditTrigger.SelectedClicked
        )
        self.names_list.setMinimumHeight(120)
        self.reset_names_button = QPushButton(self.tr("Default names"))
        self.reset_names_button.setObjectName("headResetNamesButton")
        self.reset_names_button.setAccessibleName(self.tr("Reset class names to defaults"))
        self._dataset_names = tuple(class_names) if class_names else None
        names = list(class_names or ())
        self._set_names([names[i] if i < len(names) else f"class {i}" for i in range(self.classes_spin.value())])

        classes_box = QGroupBox(self.tr("Classes"))
        classes_form = QFormLayout(classes_box)
        spin_row = QHBoxLayout()
        spin_row.addWidget(self.classes_spin)
        note = QLabel(dataset_note)
        note.setObjectName("headDatasetNote")
        note.setWordWrap(True)
        note.setVisible(bool(dataset_note))
        spin_row.addWidget(note, 1)
        classes_form.addRow(self.tr("Number of classes:"), spin_row)
        classes_form.addRow(self.tr("Class names:"), self.names_list)
        classes_form.addRow("", self.reset_names_button)

        # -- design --
        self.design_combo = QComboBox()
        self.design_combo.setObjectName("headDesignCombo")
        self.design_combo.setAccessibleName(self.tr("Head design"))
        self.design_combo.addItem(self.tr("Linear — one layer (the usual choice)"), "linear")
        self.design_combo.addItem(self.tr("MLP — hidden layers, activation, dropout"), "mlp")
        self.design_combo.setCurrentIndex(max(0, self.design_combo.findData(spec.design)))
        self.hidden_edit = QLineEdit(",".join(str(h) for h in spec.hidden))
        self.hidden_edit.setObjectName("headHiddenEdit")
        self.hidden_edit.setAccessibleName(self.tr("Hidden layer sizes"))
        self.hidden_edit.setPlaceholderText("512,256")
        self.hidden_edit.setToolTip(self.tr("Comma-separated widths of the hidden layers, e.g. 512,256"))
        self.hidden_edit.setAcceptDrops(False)
        self.activation_combo = QComboBox()
        self.activation_combo.setObjectName("headActivationCombo")
        self.activation_combo.setAccessibleName(self.tr("Activation"))
        for name in ACTIVATIONS:
            self.activation_combo.addItem(name, name)
        self.activation_combo.setCurrentIndex(max(0, self.activation_combo.findData(spec.activation)))
        self.norm_combo = QComboBox()
        self.norm_combo.setObjectName("headNormCombo")
        self.norm_combo.setAccessibleName(self.tr("Normalisation"))
        for name in NORMS:
            self.norm_combo.addItem(name, name)
        self.norm_combo.setCurrentIndex(max(0, self.norm_combo.findData(spec.norm)))
        self.dropout_spin = QDoubleSpinBox()
        self.dropout_spin.setObjectName("headDropoutSpin")
        self.dropout_spin.setAccessibleName(self.tr("Dropout"))
        self.dropout_spin.setRange(0.0, 0.95)
        self.dropout_spin.setSingleStep(0.05)
        self.dropout_spin.setDecimals(2)
        self.dropout_spin.setValue(spec.dropout)

        design_box = QGroupBox(self.tr("Design"))
        design_form = QFormLayout(design_box)
        design_form.addRow(self.tr("Design:"), self.design_combo)
        design_form.addRow(self.tr("Hidden sizes:"), self.hidden_edit)
        design_form.addRow(self.tr("Activation:"), self.activation_combo)
        design_form.addRow(self.tr("Normalisation:"), self.norm_combo)
        design_form.addRow(self.tr("Dropout:"), self.dropout_spin)

        # -- preview --
        self.old_tree = self._preview_tree("headOldPreview", self.tr("Current head"))
        self.new_tree = self._preview_tree("headNewPreview", self.tr("New head"))
        self.old_total = QLabel()
        self.old_total.setObjectName("headOldTotal")
        self.new_total = QLabel()
        self.new_total.setObjectName("headNewTotal")
        self.heads_note = QLabel()
        self.heads_note.setObjectName("headHeadsNote")
        self.heads_note.setWordWrap(True)
        preview_box = QGroupBox(self.tr("Preview"))
        preview = QVBoxLayout(preview_box)
        self.old_tree.setMaximumHeight(110)
        for title, tree, total, stretch in (
            (self.tr("Current head"), self.old_tree, self.old_total, 0),
            (self.tr("New head"), self.new_tree, self.new_total, 1),
        ):
            preview.addWidget(QLabel(f"<b>{title}</b>"))
            preview.addWidget(tree, stretch)
            preview.addWidget(total)
        preview.addWidget(self.heads_note)

        self.error_label = QLabel()
        self.error_label.setObjectName("headErrorLabel")
        self.error_label.setWordWrap(True)
        palette = self.error_label.palette()
        palette.setColor(QPalette.ColorRole.WindowText, Qt.GlobalColor.red)
        self.error_label.setPalette(palette)
        self.error_label.hide()

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.setObjectName("headDialogButtons")
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setText(self.tr("Replace head"))
        ok.setObjectName("headOkButton")
        ok.setAccessibleName(self.tr("Replace head"))
        cancel = self.buttons.button(QDialogButtonBox.StandardButton.Cancel)
        cancel.setObjectName("headCancelButton")
        cancel.setAccessibleName(self.tr("Cancel"))
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        left = QVBoxLayout()
        left.addWidget(classes_box, 1)
        left.addWidget(design_box)
        top = QHBoxLayout()
        top.addLayout(left, 2)
        top.addWidget(preview_box, 3)
        layout = QVBoxLayout(self)
        layout.addLayout(top, 1)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)
        self.resize(960, 560)

        self.classes_spin.valueChanged.connect(self._on_classes_spin_valueChanged)
        self.names_list.itemChanged.connect(self._on_form_changed)
        self.reset_names_button.clicked.connect(self._on_reset_names_button_clicked)
        self.design_combo.currentIndexChanged.connect(self._on_form_changed)
        self.hidden_edit.textChanged.connect(self._on_form_changed)
        self.activation_combo.currentIndexChanged.connect(self._on_form_changed)
        self.norm_combo.currentIndexChanged.connect(self._on_form_changed)
        self.dropout_spin.valueChanged.connect(self._on_form_changed)
        self._fill_old_preview()
        self._update()

    # -- public API -------------------------------------------------------------------------

    @classmethod
    def ask(
        cls,
        parent: QWidget | None,
        *,
        heads: Sequence[HeadInfo],
        old_modules: dict[str, nn.Module] | None = None,
        num_classes: int = 2,
        class_names: Sequence[str] | None = None,
        spec: HeadSpec | None = None,
        dataset_note: str = "",
    ) -> HeadChoice | None:
        """Show the dialog modally; the choice, or ``None`` when cancelled. Tests monkeypatch this."""
        dialog = cls(
            parent, heads=heads, old_modules=old_modules, num_classes=num_classes,
            class_names=class_names, spec=spec, dataset_note=dataset_note,
        )
        try:
            if dialog.exec() == QDialog.DialogCode.Accepted:
                return dialog.choice()
            return None
        finally:
            dialog.deleteLater()

    def choice(self) -> HeadChoice | None:
        """The current form as a choice, or ``None`` while it is invalid."""
        return self._choice

    def class_names(self) -> tuple[str, ...]:
        return tuple(self.names_list.item(i).text().strip() for i in range(self.names_list.count()))

    # -- form -------------------------------------------------------------------------------

    def _preview_tree(self, name: str, title: str) -> QTreeWidget:
        tree = QTreeWidget()
        tree.setObjectName(name)
        tree.setAccessibleName(title)
        tree.setColumnCount(3)
        tree.setHeaderLabels([self.tr("Layer"), self.tr("Kind"), self.tr("Parameters")])
        tree.setRootIsDecorated(False)
        tree.setUniformRowHeights(True)
        tree.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        header = tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        tree.setMinimumWidth(360)
        return tree

    def _set_names(self, names: Sequence[str]) -> None:
        self.names_list.blockSignals(True)
        self.names_list.clear()
        for name in names:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            self.names_list.addItem(item)
        self.names_list.blockSignals(False)

    def _spec_from_form(self) -> HeadSpec:
        from headswap_gui.core.heads import HeadSpec

        design = self.design_combo.currentData()
        hidden: tuple[int, ...] = (512,)
        if design == "mlp":
            hidden = parse_hidden_sizes(self.hidden_edit.text())
        return HeadSpec(
            design=design,
            hidden=hidden,
            activation=self.activation_combo.currentData(),
            dropout=round(float(self.dropout_spin.value()), 4),
            norm=self.norm_combo.currentData() if design == "mlp" else "none",
        )

    def _update(self) -> None:
        from headswap_gui.core.errors import HeadswapError

        mlp = self.design_combo.currentData() == "mlp"
        for widget in (self.hidden_edit, self.activation_combo, self.norm_combo):
            widget.setEnabled(mlp)
        problem = ""
        spec = None
        try:
            spec = self._spec_from_form()
        except (ValueError, HeadswapError) as error:
            problem = str(error)
        names = self.class_names()
        if not problem:
            empty = [i for i, name in enumerate(names) if not name]
            duplicates = sorted({name for name in names if name and names.count(name) > 1})
            if empty:
                problem = self.tr("class {row} has no name").format(row=empty[0])
            elif duplicates:
                problem = self.tr("class names must differ: {names}").format(names=", ".join(duplicates[:3]))
        if not self._heads:
            problem = problem or self.tr("the model has no detected head; right-click a layer → Use as head")
        self._choice = (
            HeadChoice(spec, self.classes_spin.value(), names) if spec is not None and not problem else None
        )
        self.error_label.setText(problem)
        self.error_label.setVisible(bool(problem))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(self._choice is not None)
        self._fill_new_preview(spec)
        self.choiceChanged.emit(self._choice)

    def _main_head(self) -> HeadInfo | None:
        return next((h for h in self._heads if h.role == "main"), self._heads[0] if self._heads else None)

    def _fill_old_preview(self) -> None:
        self.old_tree.clear()
        head = self._main_head()
        if head is None:
            self.old_total.setText(self.tr("no head detected"))
            return
        module = self._old_modules.get(head.path)
        total = 0
        if module is not None:
            for name, text, params in describe_layers(module):
                label = head.path if name == type(module).__name__ else f"{head.path}.{name}"
                self._add_row(self.old_tree, label, text, params)
                total += params
        else:
            self._add_row(self.old_tree, head.path, f"{head.type_name} {head.in_features} → {head.out_features}", 0)
        self.old_total.setText(self.tr("{params} parameters, {classes} outputs").format(
            params=f"{total:,}", classes=f"{head.out_features:,}"))
        self._old_total_params = total

    def _fill_new_preview(self, spec: HeadSpec | None) -> None:
        self.new_tree.clear()
        head = self._main_head()
        others = [h for h in self._heads if h is not head]
        if head is None or spec is None:
            self.new_total.setText("")
            self.heads_note.setText("")
            return
        import torch

        from headswap_gui.core.heads import build_head, count_head_params

        classes = self.classes_spin.value()
        with torch.device("meta"):
            new = build_head(head.in_features, classes, spec, conv=head.is_conv)
        for name, text, params in describe_layers(new):
            label = head.path if name == type(new).__name__ else f"{head.path}.{name}"
            self._add_row(self.new_tree, label, text, params)
        total = count_head_params(head.in_features, classes, spec, conv=head.is_conv)
        old = getattr(self, "_old_total_params", 0)
        delta = total - old
        sign = "+" if delta >= 0 else "−"
        self.new_total.setText(self.tr("{params} parameters, {classes} outputs ({sign}{delta} vs now)").format(
            params=f"{total:,}", classes=f"{classes:,}", sign=sign, delta=f"{abs(delta):,}"))
        if others:
            extra = sum(count_head_params(h.in_features, classes, spec, conv=h.is_conv) for h in others)
            paths = ", ".join(h.path for h in others)
            self.heads_note.setText(self.tr(
                "The model also has {n} {role} head(s) ({paths}); they get the same design "
                "({extra} more parameters), so every output has {classes} classes."
            ).format(n=len(others), role=others[0].role, paths=paths, extra=f"{extra:,}", classes=classes))
        else:
            self.heads_note.setText(self.tr("Only the new head starts from random weights; every other layer keeps its weights."))

    @staticmethod
    def _add_row(tree: QTreeWidget, name: str, text: str, params: int) -> None:
        item = QTreeWidgetItem([name, text, f"{params:,}" if params else "—"])
        item.setTextAlignment(2, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        tree.addTopLevelItem(item)

    # -- slots ------------------------------------------------------------------------------

    @Slot(int)
    def _on_classes_spin_valueChanged(self, value: int) -> None:
        names = list(self.class_names())
        if value < len(names):
            names = names[:value]
        else:
            source = list(self._dataset_names or ())
            names += [
                source[i] if i < len(source) and source[i] not in names else f"class {i}"
                for i in range(len(names), value)
            ]
        self._set_names(names)
        self._update()

    @Slot()
    def _on_reset_names_button_clicked(self) -> None:
        count = self.classes_spin.value()
        source = list(self._dataset_names or ())
        if len(source) == count:
            self._set_names(source)
        else:
            self._set_names([f"class {i}" for i in range(count)])
        self._update()

    @Slot()
    def _on_form_changed(self, *_args: object) -> None:
        self._update()
