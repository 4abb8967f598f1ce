"""HeadDialog: pre-filled classes, editable names, Linear/MLP design, live old-vs-new preview."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox

from headswap_gui.core.heads import HeadSpec, count_head_params
from headswap_gui.core.sources import load_model
from headswap_gui.gui.head_dialog import HeadChoice, HeadDialog, parse_hidden_sizes


@pytest.fixture(scope="module")
def tiny():
    loaded = load_model("timm:test_efficientnet")
    return loaded, loaded.find_heads()


def make_dialog(qtbot, tiny, **kwargs) -> HeadDialog:
    loaded, heads = tiny
    old = {h.path: loaded.model.get_submodule(h.path) for h in heads}
    dialog = HeadDialog(None, heads=heads, old_modules=old, **kwargs)
    qtbot.addWidget(dialog)
    return dialog


def ok_button(dialog: HeadDialog):
    return dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)


def test_prefilled_from_dataset_and_linear_preview(qtbot, tiny) -> None:
    dialog = make_dialog(qtbot, tiny, num_classes=3, class_names=("cat", "dog", "fox"))
    assert dialog.classes_spin.value() == 3
    assert dialog.class_names() == ("cat", "dog", "fox")
    # the current head: Linear 256 → 1000 with its parameters
    assert dialog.old_tree.topLevelItemCount() == 1
    assert "256 → 1000" in dialog.old_tree.topLevelItem(0).text(1)
    assert "257,000" in dialog.old_total.text()
    # the new head: one Linear 256 → 3
    assert dialog.new_tree.topLevelItemCount() == 1
    assert "256 → 3" in dialog.new_tree.topLevelItem(0).text(1)
    assert f"{count_head_params(256, 3, HeadSpec()):,}" in dialog.new_total.text()
    choice = dialog.choice()
    assert choice == HeadChoice(HeadSpec(), 3, ("cat", "dog", "fox"))
    assert ok_button(dialog).isEnabled()
    for widget in (dialog.hidden_edit, dialog.activation_combo, dialog.norm_combo):
        assert not widget.isEnabled()  # only meaningful for an MLP


def test_mlp_design_updates_preview_and_choice(qtbot, tiny) -> None:
    dialog = make_dialog(qtbot, tiny, num_classes=4)
    dialog.design_combo.setCurrentIndex(dialog.design_combo.findData("mlp"))
    dialog.hidden_edit.setText("64, 32")
    dialog.activation_combo.setCurrentIndex(dialog.activation_combo.findData("gelu"))
    dialog.norm_combo.setCurrentIndex(dialog.norm_combo.findData("batchnorm"))
    dialog.dropout_spin.setValue(0.25)
    spec = HeadSpec("mlp", (64, 32), "gelu", 0.25, "batchnorm")
    assert dialog.choice().spec == spec
    rows = [dialog.new_tree.topLevelItem(i).text(1) for i in range(dialog.new_tree.topLevelItemCount())]
    assert rows[0] == "Linear 256 → 64" and rows[-1] == "Linear 32 → 4"
    assert any(r.startswith("GELU") for r in rows) and any(r.startswith("BatchNorm1d") for r in rows)
    assert any(r.startswith("Dropout") for r in rows)
    assert f"{count_head_params(256, 4, spec):,} parameters" in dialog.new_total.text()
    dialog.norm_combo.setCurrentIndex(dialog.norm_combo.findData("layernorm"))
    rows = [dialog.new_tree.topLevelItem(i).text(1) for i in range(dialog.new_tree.topLevelItemCount())]
    assert "LayerNorm 64" in rows and "LayerNorm 32" in rows  # not "LayerNorm (64,)"


def test_invalid_input_disables_ok_with_a_reason(qtbot, tiny) -> None:
    dialog = make_dialog(qtbot, tiny, num_classes=2)
    dialog.design_combo.setCurrentIndex(dialog.design_combo.findData("mlp"))
    dialog.hidden_edit.setText("12, abc")
    assert dialog.choice() is None and not ok_button(dialog).isEnabled()
    assert "abc" in dialog.error_label.text() and not dialog.error_label.isHidden()
    dialog.hidden_edit.setText("12")
    assert ok_button(dialog).isEnabled()
    # duplicate class names
    dialog.names_list.item(1).setText("class 0")
    assert dialog.choice() is None and "differ" in dialog.error_label.text()
    dialog.names_list.item(1).setText("other")
    assert dialog.choice().class_names == ("class 0", "other")


def test_class_count_grows_and_shrinks_the_names(qtbot, tiny) -> None:
    dialog = make_dialog(qtbot, tiny, num_classes=2, class_names=("a", "b"))
    dialog.classes_spin.setValue(4)
    assert dialog.class_names() == ("a", "b", "class 2", "class 3")
    dialog.classes_spin.setValue(1)
    assert dialog.class_names() == ("a",)
    assert "→ 1" in dialog.new_tree.topLevelItem(0).text(1)
    item = dialog.names_list.item(0)
    assert item.flags() & Qt.ItemFlag.ItemIsEditable


def test_auxiliary_heads_are_mentioned(qtbot) -> None:
    loaded = load_model("torchvision:googlenet", structure_only=True)
    heads = loaded.find_heads()
    old = {h.path: loaded.model.get_submodule(h.path) for h in heads}
    dialog = HeadDialog(None, heads=heads, old_modules=old, num_classes=5)
    qtbot.addWidget(dialog)
    assert "auxiliary" in dialog.heads_note.text() and "aux1.fc2" in dialog.heads_note.text()
    assert "1024 → 1000" in dialog.old_tree.topLevelItem(0).text(1)  # meta weights still describe


def test_ask_returns_the_choice_or_none(qtbot, tiny, monkeypatch) -> None:
    loaded, heads = tiny
    monkeypatch.setattr(HeadDialog, "exec", lambda self: QDialog.DialogCode.Accepted)
    choice = HeadDialog.ask(None, heads=heads, num_classes=3, class_names=("x", "y", "z"))
    assert choice == HeadChoice(HeadSpec(), 3, ("x", "y", "z"))
    monkeypatch.setattr(HeadDialog, "exec", lambda self: QDialog.DialogCode.Rejected)
    assert HeadDialog.ask(None, heads=heads, num_classes=3) is None


def test_widgets_have_names_for_tests_and_screen_readers(qtbot, tiny) -> None:
    dialog = make_dialog(qtbot, tiny, num_classes=2)
    for widget in (dialog.classes_spin, dialog.names_list, dialog.design_combo, dialog.hidden_edit,
                   dialog.activation_combo, dialog.norm_combo, dialog.dropout_spin, ok_button(dialog)):
        assert widget.objectName() and widget.accessibleName()


@pytest.mark.parametrize(("text", "sizes"), [("512", (512,)), ("512,256", (512, 256)), (" 64 ; 32 ", (64, 32))])
def test_parse_hidden_sizes(text: str, sizes: tuple[int, ...]) -> None:
    assert parse_hidden_sizes(text) == sizes


@pytest.mark.parametrize("text", ["", "0", "-3", "1.5", "abc"])
def test_parse_hidden_sizes_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hidden_sizes(text)
