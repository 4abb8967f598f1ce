"""ModelController and the undoable head edits: exact restore on undo, same modules on redo."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtGui import QUndoStack

from headswap_gui.core.heads import HeadSpec
from headswap_gui.core.sources import load_model
from headswap_gui.gui.commands import ModelController, SetHeadsCommand, SwapHeadCommand


@pytest.fixture
def controller(qapp) -> ModelController:
    loaded = load_model("timm:test_efficientnet")
    controller = ModelController()
    heads = loaded.find_heads()
    from headswap_gui.core.tracing import trace_forward

    shapes = trace_forward(loaded.model, loaded.preprocessing.input_size).output_shapes
    controller.set_model(loaded, heads, shapes)
    return controller


def test_swap_undo_restores_exact_old_head_and_redo_reinstalls_same_new_head(controller: ModelController) -> None:
    loaded = controller.loaded
    old = loaded.model.get_submodule("classifier")
    old_weight = old.weight.detach().clone()
    old_names = loaded.class_names
    stack = QUndoStack()
    trees = []
    controller.treeChanged.connect(trees.append)

    command = SwapHeadCommand(controller, 3, HeadSpec("mlp", (16,), "gelu", 0.1, "layernorm"), ("a", "b", "c"))
    stack.push(command)
    assert command.error is None and stack.count() == 1
    new = loaded.model.get_submodule("classifier")
    assert new is not old and isinstance(new, torch.nn.Sequential)
    assert loaded.model.num_classes == 3 and loaded.class_names == ("a", "b", "c")
    assert controller.num_classes() == 3
    record = controller.tree.find("classifier")
    assert record.head_role == "main" and record.type_name == "Sequential"
    assert record.output_shape == (2, 3)  # traced on meta from the old head's input
    assert controller.tree.find("classifier.0").output_shape == (2, 16)
    assert all(child.inside_head for child in record.children)
    new_weight = new[0].weight.detach().clone()

    stack.undo()
    assert loaded.model.get_submodule("classifier") is old
    assert torch.equal(old.weight, old_weight)
    assert loaded.model.num_classes == 1000 and loaded.class_names == old_names
    assert controller.tree.find("classifier").type_name == "Linear"
    assert controller.tree.find("classifier").output_shape == (2, 1000)

    stack.redo()
    assert loaded.model.get_submodule("classifier") is new  # not rebuilt: same module, same weights
    assert torch.equal(new[0].weight, new_weight)
    assert loaded.class_names == ("a", "b", "c")
    assert len(trees) == 3


def test_failed_swap_leaves_model_and_stack_alone(controller: ModelController) -> None:
    loaded = controller.loaded
    old = loaded.model.get_submodule("classifier")
    stack = QUndoStack()
    command = SwapHeadCommand(controller, 3, HeadSpec(), ("a", "b"))  # 2 names for 3 classes
    stack.push(command)
    assert command.error and "class names" in command.error
    assert stack.count() == 0
    assert loaded.model.get_submodule("classifier") is old


def test_set_heads_command_changes_the_highlighted_head(controller: ModelController) -> None:
    stack = QUndoStack()
    heads = controller.loaded.find_heads(["conv_head"])
    stack.push(SetHeadsCommand(controller, heads))
    assert [h.path for h in controller.heads] == ["conv_head"]
    assert controller.tree.find("conv_head").head_role == "main"
    assert controller.tree.find("classifier").head_role is None
    stack.undo()
    assert [h.path for h in controller.heads] == ["classifier"]
    assert controller.tree.find("classifier").head_role == "main"


def test_auxiliary_heads_are_swapped_and_restored_together(qapp) -> None:
    loaded = load_model("torchvision:googlenet", structure_only=True)
    controller = ModelController()
    controller.set_model(loaded, loaded.find_heads())
    paths = sorted(h.path for h in controller.heads)
    assert paths == ["aux1.fc2", "aux2.fc2", "fc"]
    old = {p: loaded.model.get_submodule(p) for p in paths}
    roles = {h.path: h.role for h in controller.heads}
    stack = QUndoStack()
    stack.push(SwapHeadCommand(controller, 5, HeadSpec(), None))
    assert all(loaded.model.get_submodule(p).out_features == 5 for p in paths)
    assert {h.path: h.role for h in controller.heads} == roles  # aux heads stay auxiliary
    stack.undo()
    assert all(loaded.model.get_submodule(p) is old[p] for p in paths)


def test_frozen_state_shows_after_refresh(controller: ModelController) -> None:
    for name, param in controller.loaded.model.named_parameters():
        param.requires_grad_(name.startswith("classifier"))
    controller.refresh_tree()
    tree = controller.tree
    assert tree.find("conv_stem").trainable_params == 0
    assert tree.find("classifier").trainable_params == tree.find("classifier").total_params
