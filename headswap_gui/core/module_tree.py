"""Layer-tree data for inspection: one immutable record per module.

Built from the module hierarchy and one dummy forward (on the ``meta`` device when only the
structure is needed), never by parsing ``str(model)``. The window's tree view and
``headswap inspect`` are both views over these records.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from .heads import HeadInfo

HeadRole = str  # "main" | "auxiliary" | "distillation"


@dataclass(frozen=True)
class LayerRecord:
    """One module of the model, with its children."""

    path: str  # dotted path from the root ("" for the root itself)
    name: str  # last path component ("" for the root)
    type_name: str  # class name, e.g. "Linear"
    own_params: int  # parameters held directly by this module
    total_params: int  # own + all descendants
    trainable_params: int  # of total_params, those with requires_grad
    output_shape: tuple[int, ...] | None  # from the dummy forward; None when it did not run
    head_role: HeadRole | None = None  # set on detected heads
    head_found_by: str | None = None  # how the head was found, for tooltips
    inside_head: bool = False  # a descendant of a head
    description: str = ""  # the layer in words, e.g. "Linear 512 → 1000" (see describe_layer)
    children: tuple[LayerRecord, ...] = field(default=())

    def walk(self) -> Iterator[LayerRecord]:
        """This record and every descendant, depth first in module order."""
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, path: str) -> LayerRecord | None:
        for record in self.walk():
            if record.path == path:
                return record
        return None

    def to_dict(self) -> dict[str, Any]:
        """The ``layers`` entry of ``headswap inspect --json``."""
        return {
            "path": self.path,
            "type": self.type_name,
            "params": self.total_params,
            "trainable": self.trainable_params,
            "output_shape": list(self.output_shape) if self.output_shape is not None else None,
            "head": self.head_role,
            "children": [child.to_dict() for child in self.children],
        }


def build_module_tree(
    model: nn.Module,
    input_size: int = 224,
    heads: list[HeadInfo] | None = None,
    output_shapes: dict[str, tuple[int, ...]] | None = None,
) -> LayerRecord:
    """Records for every module of ``model``, with heads flagged.

    ``output_shapes`` comes from a trace already run (head detection runs one); without it a
    dummy eval-mode forward is traced here. Parameter counts are taken once per tensor, so
    shared weights are not counted twice.
    """
    from .heads import detect_heads
    from .tracing import trace_forward

    if heads is None:
        try:
            detection = detect_heads(model, input_size)
            heads = list(detection.heads)
            if output_shapes is None and detection.eval_trace is not None:
                output_shapes = detection.eval_trace.output_shapes
        except Exception:  # noqa: BLE001 - the tree is still worth showing without heads
            heads = []
    if output_shapes is None:
        try:
            output_shapes = trace_forward(model, input_size).output_shapes
        except Exception:  # noqa: BLE001 - a model that cannot run still has a structure
            output_shapes = {}
    head_by_path = {head.path: head for head in heads}
    # A subtree's counts are its own tensors plus its children's: one pass over the model, not
    # one per subtree (which cost 14 ms of the window's head swap for EfficientNet-Lite0). A
    # tensor reachable twice (tied weights, a module used in two places) is counted once per
    # subtree instead, by collecting each subtree's tensors.
    every_path = list(model.named_parameters(remove_duplicate=False))
    shared = len({id(p) for _, p in every_path}) != len(every_path)

    def build(path: str, module: nn.Module, inside_head: bool) -> LayerRecord:
        head = head_by_path.get(path)
        children = tuple(
            build(f"{path}.{name}" if path else name, child, inside_head or head is not None)
            for name, child in module.named_children()
        )
        own = list(module.parameters(recurse=False))
        own_count = sum(p.numel() for p in own)
        if shared:
            every = list(module.parameters())
            total = sum(p.numel() for p in every)
            trainable = sum(p.numel() for p in every if p.requires_grad)
        else:
            total = own_count + sum(child.total_params for child in children)
            trainable = sum(p.numel() for p in own if p.requires_grad) + sum(child.trainable_params for child in children)
        return LayerRecord(
            path=path,
            name=path.rsplit(".", 1)[-1] if path else "",
            type_name=type(module).__name__,
            own_params=own_count,
            total_params=total,
            trainable_params=trainable,
            output_shape=output_shapes.get(path),
            head_role=head.role if head else None,
            head_found_by=head.found_by if head else None,
            inside_head=inside_head,
            description=describe_layer(module),
            children=children,
        )

    return build("", model, False)


def describe_layer(layer: nn.Module) -> str:
    """``layer`` in words a person reads — "Linear 512 → 1000", "Conv2d 3 → 64 (7×7)",
    "LayerNorm 256", "Dropout p=0.2" — for the layer details and the head preview. Sizes are
    plain numbers: a Python repr such as ``(256,)`` or ``(3, 3)`` means nothing to a user."""
    kind = type(layer).__name__
    if hasattr(layer, "in_features") and hasattr(layer, "out_features"):
        return f"{kind} {layer.in_features} → {layer.out_features}"
    if hasattr(layer, "in_channels") and hasattr(layer, "out_channels"):
        kernel = getattr(layer, "kernel_size", None)
        return f"{kind} {layer.in_channels} → {layer.out_channels}" + (f" ({_plain_size(kernel)})" if kernel else "")
    if kind.startswith("Dropout") and hasattr(layer, "p"):
        return f"{kind} p={layer.p:g}"
    if hasattr(layer, "num_features") and "Norm" in kind:  # a whole timm model has num_features too
        return f"{kind} {layer.num_features}"
    if hasattr(layer, "normalized_shape"):
        return f"{kind} {_plain_size(layer.normalized_shape)}"
    if hasattr(layer, "num_groups") and hasattr(layer, "num_channels"):
        return f"{kind} {layer.num_channels} in {layer.num_groups} group{'s' if layer.num_groups != 1 else ''}"
    return kind


def _plain_size(size: int | tuple[int, ...] | list[int]) -> str:
    """``(256,)`` → "256", ``(3, 3)`` → "3×3", ``7`` → "7" (``torch.Size`` is a tuple too)."""
    return "×".join(str(int(d)) for d in size) if isinstance(size, (tuple, list)) else str(size)


def render_tree(record: LayerRecord, max_depth: int | None = None) -> str:
    """The tree as indented text for ``headswap inspect``, heads marked with ◀."""
    lines: list[str] = []

    def add(node: LayerRecord, depth: int) -> None:
        name = node.name or node.type_name
        shape = "×".join(str(d) for d in node.output_shape[1:]) if node.output_shape else ""
        label = f"{'  ' * depth}{name}" + (f" ({node.type_name})" if node.name else "")
        mark = f"  ◀ HEAD ({node.head_role})" if node.head_role else ""
        lines.append(f"{label:<58} {shape:>16} {node.total_params:>14,}{mark}")
        if max_depth is None or depth < max_depth:
            for child in node.children:
                add(child, depth + 1)

    lines.append(f"{'layer':<58} {'output':>16} {'parameters':>14}")
    add(record, 0)
    return "\n".join(lines)


@dataclass(frozen=True)
class Inspection:
    """Everything a view of a model needs: its heads, its layer tree, the traced output shapes,
    and — when no head could be found — why, in words for the user."""

    heads: tuple[HeadInfo, ...]
    output_shapes: dict[str, tuple[int, ...]]
    tree: LayerRecord
    problem: str | None = None


def inspect_model(model: nn.Module, input_size: int = 224, head_paths: list[str] | None = None) -> Inspection:
    """Find the heads and build the layer tree from one dummy forward pass.

    A model without a detectable head is still inspected (the tree is worth showing); the
    reason is in ``problem``.
    """
    from .errors import HeadError
    from .heads import detect_heads
    from .tracing import trace_forward

    heads: tuple[HeadInfo, ...] = ()
    shapes: dict[str, tuple[int, ...]] | None = None
    problem = None
    try:
        detection = detect_heads(model, input_size, head_paths)
        heads = detection.heads
        if detection.eval_trace is not None:
            shapes = detection.eval_trace.output_shapes
    except HeadError as error:
        problem = str(error)
    if shapes is None:
        try:
            shapes = trace_forward(model, input_size).output_shapes
        except Exception:  # noqa: BLE001 - a model that cannot run still has a structure
            shapes = {}
    return Inspection(heads, shapes, build_module_tree(model, input_size, list(heads), shapes), problem)
