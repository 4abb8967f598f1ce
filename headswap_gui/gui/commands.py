"""The model the window edits, and the undoable edits on it.

:class:`ModelController` writes the model fields of the :class:`WorkbenchState` (the loaded
model, its detected heads and the layer-tree records built from it) and announces changes with
signals; the views (layer tree, status bar, panels)
only listen. Every edit of the model goes through a :class:`QUndoCommand` pushed on the
window's :class:`QUndoStack`:

- :class:`SwapHeadCommand` replaces the heads through ``core.sources.swap_head``. It keeps the
  old head *modules* (not copies), so undo puts back exactly the layers that were there, with
  their weights, and redo re-installs the same new modules instead of building fresh random
  ones.
- :class:`SetHeadsCommand` changes which layer counts as the head ("Use as head").

The tree is rebuilt with ``core.module_tree.build_module_tree`` after each change, reusing the
output shapes of the load-time trace (only the new head's layers are shape-traced, on the
``meta`` device), so undo and redo are instant even for big models.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand

from headswap_gui.gui.state import WorkbenchState

if TYPE_CHECKING:  # torch is imported lazily: this module is on the start-up import path
    from torch import nn

    from headswap_gui.core.heads import HeadInfo, HeadSpec
    from headswap_gui.core.module_tree import LayerRecord
    from headswap_gui.core.sources import LoadedModel

__all__ = ["HeadState", "ModelController", "SetHeadsCommand", "SwapHeadCommand"]


@dataclass
class HeadState:
    """Everything a head swap changes, captured so it can be put back exactly."""

    modules: dict[str, Any]  # head path -> the nn.Module installed there (None: no head attached)
    heads: tuple[Any, ...]  # HeadInfo per head
    class_names: tuple[str, ...] | None
    attributes: dict[str, Any] = field(default_factory=dict)  # num_classes, HF config labels
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # output shapes in the heads


class ModelController(QObject):
    """The one writer of the model fields of the :class:`WorkbenchState`, and their Qt face.

    Signals:

    * ``modelChanged(object)`` – a new :class:`LoadedModel` (or ``None``) was installed;
    * ``headsChanged(object)`` – the heads (tuple of ``HeadInfo``) or their modules changed;
    * ``treeChanged(object)`` – new layer records (``LayerRecord`` or ``None``);
    * ``versionChanged(int, str)`` – the model's version and, for people, what changed it.
    """

    modelChanged = Signal(object)
    headsChanged = Signal(object)
    treeChanged = Signal(object)
    versionChanged = Signal(int, str)

    def __init__(self, parent: QObject | None = None, state: WorkbenchState | None = None) -> None:
        super().__init__(parent)
        self.state = state if state is not None else WorkbenchState()

    # -- state ------------------------------------------------------------------------------

    @property
    def loaded(self) -> LoadedModel | None:
        return self.state.loaded

    @property
    def heads(self) -> tuple[HeadInfo, ...]:
        return self.state.heads

    @property
    def tree(self) -> LayerRecord | None:
        return self.state.tree

    @property
    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self.state.output_shapes)

    @property
    def version(self) -> int:
        """Changes with every change of the model's weights or heads that is kept (a load, a
        head swap, undo/redo, a finished run); results are tagged with the version they saw."""
        return self.state.version

    def bump_version(self, reason: str) -> None:
        self.state.update(version=self.state.version + 1)
        self.versionChanged.emit(self.state.version, reason)

    def mark_heads_trained(self) -> None:
        """The current head modules hold trained weights (a finished run, or a run folder)."""
        ids = {id(module) for module in self.state.head_modules()}
        self.state.update(trained_head_ids=self.state.trained_head_ids | ids, new_head_ids=self.state.new_head_ids - ids)

    def head_is_trained(self) -> bool:
        return self.state.head_is_trained()

    def main_head(self) -> HeadInfo | None:
        return self.state.main_head()

    def num_classes(self) -> int | None:
        return self.state.num_classes()

    def set_model(
        self,
        loaded: LoadedModel | None,
        heads: tuple[HeadInfo, ...] | list[HeadInfo] = (),
        output_shapes: dict[str, tuple[int, ...]] | None = None,
        tree: LayerRecord | None = None,
    ) -> None:
        """Install a freshly loaded model with what the loader found (tree built if missing)."""
        self.state.update(
            loaded=loaded, heads=tuple(heads), output_shapes=dict(output_shapes or {}), tree=None,
            trained_head_ids=frozenset(), new_head_ids=frozenset(),
        )
        if loaded is not None and loaded.metadata.get("epochs"):
            self.mark_heads_trained()  # a run folder: its heads were trained
        self.modelChanged.emit(loaded)
        self.bump_version("another model was loaded")
        self.headsChanged.emit(self.state.heads)
        if loaded is not None and tree is None:
            self.refresh_tree()
        else:
            self.state.update(tree=tree)
            self.treeChanged.emit(tree)

    def refresh_tree(self) -> None:
        """Rebuild the layer records from the model as it is now (heads, trainable flags).

        No forward pass: the shapes come from the load-time trace, patched for swapped heads.
        """
        state = self.state
        tree = None
        if state.loaded is not None:
            from headswap_gui.core.module_tree import build_module_tree

            tree = build_module_tree(
                state.loaded.model, state.loaded.preprocessing.input_size, list(state.heads), state.output_shapes
            )
        state.update(tree=tree)
        self.treeChanged.emit(tree)

    # -- head states (used by the commands) ----------------------------------------------------

    def capture(self, heads: tuple[HeadInfo, ...] | None = None) -> HeadState:
        """The current head modules, infos, class names and class-count attributes."""
        loaded = self._require_model()
        heads = self.state.heads if heads is None else tuple(heads)
        from headswap_gui.core.heads import head_module

        model = loaded.model
        modules = {h.path: head_module(model, h.path) for h in heads}  # None: a head not attached yet
        shapes = {
            path: shape for path, shape in self.state.output_shapes.items()
            if any(path == h.path or path.startswith(h.path + ".") for h in heads)
        }
        return HeadState(modules, heads, loaded.class_names, _class_count_attributes(model), shapes)

    def install(self, state: HeadState) -> None:
        """Put ``state``'s modules back into the model and make it current."""
        loaded = self._require_model()
        model = loaded.model
        from headswap_gui.core.heads import set_head_module

        reference = _reference_parameter(model, set(state.modules))
        for path, module in state.modules.items():
            if reference is not None and module is not None:
                module.to(device=reference.device)  # in place: the module object stays the same
            set_head_module(model, path, module)
        loaded.class_names = state.class_names
        _restore_class_count_attributes(model, state.attributes)
        current = self.state.output_shapes
        replaced_outputs = {p: (current.get(p), state.shapes.get(p)) for p in state.modules}
        shapes = {
            path: shape for path, shape in current.items()
            if not any(path == p or path.startswith(p + ".") for p in state.modules)
        }
        shapes.update(state.shapes)
        for path, (old_output, new_output) in replaced_outputs.items():
            # Containers that pass the head's output through (the model itself) change with it.
            for ancestor in _ancestors(path):
                if old_output is not None and new_output is not None and shapes.get(ancestor) == old_output:
                    shapes[ancestor] = new_output
        self.state.update(output_shapes=shapes, heads=tuple(state.heads))
        self.bump_version("the head was replaced")
        self.headsChanged.emit(self.state.heads)
        self.refresh_tree()

    def set_heads(self, heads: tuple[HeadInfo, ...]) -> None:
        """Change which layers count as heads (the modules stay)."""
        self._require_model()
        self.state.update(heads=tuple(heads))
        self.headsChanged.emit(self.state.heads)
        self.refresh_tree()

    def head_subtree_shapes(self, path: str, module: nn.Module, head: HeadInfo) -> dict[str, tuple[int, ...]]:
        """Output shapes of a new head's layers, traced on ``meta`` from the old head's input."""
        old = self.state.output_shapes.get(path)
        if not old:
            return {}
        shape = list(old)
        if head.is_conv and len(shape) >= 2:
            shape[1] = head.in_features
        else:
            shape[-1] = head.in_features
        return _trace_head_shapes(path, module, tuple(shape))

    def _require_model(self) -> LoadedModel:
        if self.state.loaded is None:
            raise RuntimeError("no model loaded")
        return self.state.loaded


class SwapHeadCommand(QUndoCommand):
    """Replace every head with a new design for ``num_classes`` classes, undoably.

    The first ``redo`` (run by ``QUndoStack.push``) swaps through ``core.sources.swap_head``;
    if core refuses, the command records the message in :attr:`error`, marks itself obsolete
    (so the stack drops it) and leaves the model as it was.
    """

    def __init__(
        self,
        controller: ModelController,
        num_classes: int,
        spec: HeadSpec | None = None,
        class_names: tuple[str, ...] | list[str] | None = None,
        text: str | None = None,
        parent: QUndoCommand | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(parent)
        self._controller = controller
        self._num_classes = int(num_classes)
        self._spec = spec
        self._seed = seed  # the new head's starting weights repeat with it (as `headswap train --seed`)
        self._class_names = tuple(class_names) if class_names is not None else None
        self._before: HeadState | None = None
        self._after: HeadState | None = None
        self.error: str | None = None
        design = spec.describe() if spec is not None else "Linear"
        self.setText(text or f"Replace head ({design}, {self._num_classes} classes)")

    @property
    def before(self) -> HeadState | None:
        return self._before

    @property
    def after(self) -> HeadState | None:
        return self._after

    def redo(self) -> None:
        if self._after is not None:
            self._controller.install(self._after)
            return
        from headswap_gui.core.errors import HeadswapError
        from headswap_gui.core.heads import HeadSpec
        from headswap_gui.core.sources import swap_head

        controller = self._controller
        loaded = controller.loaded
        if loaded is None or not controller.heads:
            self._fail("load a model with a detected head first (or right-click a layer → Use as head)")
            return
        before = controller.capture()
        spec = self._spec or HeadSpec()
        try:
            new = swap_head(
                loaded, self._num_classes, spec,
                class_names=self._class_names, head_paths=[h.path for h in before.heads], seed=self._seed,
            )
        except HeadswapError as error:
            self._fail(str(error))
            return
        old_by_path = {h.path: h for h in before.heads}
        heads = tuple(
            replace(
                info,
                # swap_head names the heads by path, so their roles come from before the swap;
                # an empty slot that got a head is the main head now.
                role=_role_after_swap(old_by_path[info.path].role) if info.path in old_by_path else info.role,
                found_by=(
                    f"replaced here with a new {spec.describe()} head (was {old_by_path[info.path].type_name} "
                    f"with {old_by_path[info.path].out_features:,} outputs)"
                )
                if info.path in old_by_path else info.found_by,
            )
            for info in new
        )
        after = HeadState(
            modules={h.path: loaded.model.get_submodule(h.path) for h in heads},
            heads=heads,
            class_names=loaded.class_names,
            attributes=_class_count_attributes(loaded.model),
        )
        for head in heads:
            after.shapes.update(controller.head_subtree_shapes(head.path, after.modules[head.path], head))
        self._before, self._after = before, after
        state = controller.state
        state.update(new_head_ids=state.new_head_ids | {id(m) for m in after.modules.values()})
        controller.install(after)

    def undo(self) -> None:
        if self._before is not None:
            self._controller.install(self._before)

    def _fail(self, message: str) -> None:
        self.error = message
        self.setObsolete(True)


class SetHeadsCommand(QUndoCommand):
    """Make other layers the heads (e.g. right-click → Use as head), undoably."""

    def __init__(
        self,
        controller: ModelController,
        heads: tuple[HeadInfo, ...] | list[HeadInfo],
        text: str | None = None,
        parent: QUndoCommand | None = None,
    ) -> None:
        super().__init__(parent)
        self._controller = controller
        self._before = tuple(controller.heads)
        self._after = tuple(heads)
        paths = ", ".join(h.path for h in self._after)
        self.setText(text or f"Use {paths} as head")

    def redo(self) -> None:
        self._controller.set_heads(self._after)

    def undo(self) -> None:
        self._controller.set_heads(self._before)


# -- helpers -------------------------------------------------------------------------------------


def _role_after_swap(role: str) -> str:
    return "main" if role == "new" else role


def _reference_parameter(model: nn.Module, head_paths: set[str]) -> Any:
    """A parameter outside the heads: where the rest of the model lives now."""
    for name, param in model.named_parameters():
        if not any(name == p or name.startswith(p + ".") for p in head_paths):
            return param
    return None


def _class_count_attributes(model: nn.Module) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if isinstance(getattr(model, "num_classes", None), int):
        attributes["num_classes"] = model.num_classes
    config = getattr(model, "config", None)
    if config is not None:
        for key in ("num_labels", "id2label", "label2id"):
            if hasattr(config, key):
                value = getattr(config, key)
                attributes[f"config.{key}"] = dict(value) if isinstance(value, dict) else value
    return attributes


def _restore_class_count_attributes(model: nn.Module, attributes: dict[str, Any]) -> None:
    if "num_classes" in attributes:
        model.num_classes = attributes["num_classes"]
    config = getattr(model, "config", None)
    if config is None:
        return
    # num_labels first: Hugging Face's setter regenerates id2label, which is restored after.
    for key in ("num_labels", "id2label", "label2id"):
        if f"config.{key}" in attributes:
            setattr(config, key, attributes[f"config.{key}"])


def _ancestors(path: str) -> list[str]:
    """``"a.b.c"`` → ``["a.b", "a", ""]`` (the root is ``""``)."""
    parts = path.split(".")
    return [".".join(parts[:end]) for end in range(len(parts) - 1, -1, -1)]


def _trace_head_shapes(path: str, module: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Output shapes of ``module`` and its descendants for one ``meta`` input."""
    import torch

    shapes: dict[str, tuple[int, ...]] = {}
    names = {sub: (f"{path}.{name}" if name else path) for name, sub in module.named_modules()}
    handles = []

    def hook(sub: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and names.get(sub) not in shapes:
            shapes[names[sub]] = tuple(output.shape)

    for sub in names:
        handles.append(sub.register_forward_hook(hook))
    modes = {sub: sub.training for sub in names}
    try:
        module.eval()
        state = {
            name: torch.empty_like(tensor, device="meta")
            for name, tensor in list(module.named_parameters()) + list(module.named_buffers())
        }
        dtype = next((t.dtype for t in state.values() if t.is_floating_point()), torch.float32)
        with torch.no_grad():
            torch.func.functional_call(module, state, (torch.empty(input_shape, device="meta", dtype=dtype),))
    except Exception:  # noqa: BLE001 - shapes are a nicety; the tree still shows without them
        pass
    finally:
        for handle in handles:
            handle.remove()
        for sub, training in modes.items():
            sub.training = training
    return shapes
