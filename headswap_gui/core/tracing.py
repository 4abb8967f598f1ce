"""One dummy forward pass with hooks, run without touching the model's real weights.

Both head detection and the layer tree need to know what a forward pass does: which layers
run, what shapes they produce, and which layer's output the logits are computed from. The
pass runs on the ``meta`` device through :func:`torch.func.functional_call` with meta copies
of the parameters and buffers, so a 600-million-parameter model is traced in well under a
second and without allocating its weights. Where a model cannot run on ``meta`` the pass
falls back to a real forward on a batch of two small images, on copies of the buffers, so
even a train-mode pass leaves BatchNorm's running statistics as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .construction import has_meta_parameters


@dataclass
class TraceResult:
    """What one forward pass revealed."""

    main_outputs: list[torch.Tensor]  # the logits tensor(s) the model returns as its prediction
    extra_outputs: list[torch.Tensor]  # auxiliary outputs (train-mode tuples: GoogLeNet, Inception)
    input_size: int = 224  # the side of the square dummy images
    images: torch.Tensor | None = field(default=None, repr=False)  # the dummy batch (a graph leaf)
    executed: list[str] = field(default_factory=list)  # module paths in first-execution order
    output_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    producer_of: dict[Any, str] = field(default_factory=dict)  # grad_fn -> path of leaf module


def call_model(model: nn.Module, images: torch.Tensor) -> Any:
    """Call an image classifier, whatever its calling convention (Hugging Face models take
    ``pixel_values=``)."""
    if _is_hf_model(model):
        return model(pixel_values=images)
    return model(images)


def split_outputs(output: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Split a classifier's return value into its main logits and any auxiliary logits.

    Handles plain tensors, torchvision's train-mode namedtuples (GoogLeNet returns
    ``(logits, aux2, aux1)``, Inception v3 ``(logits, aux)``), timm's distillation tuples and
    Hugging Face ``ModelOutput`` objects.
    """
    if isinstance(output, torch.Tensor):
        return output, []
    if isinstance(output, Sequence) and output and all(
        isinstance(item, torch.Tensor) or item is None for item in output
    ):
        tensors = [item for item in output if isinstance(item, torch.Tensor)]
        return tensors[0], tensors[1:]
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits, []
    if isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"], []
    raise TypeError(f"the model returned {type(output).__name__}, not logits")


def first_tensor(value: Any) -> torch.Tensor | None:
    """The first tensor inside a module's output, for recording output shapes."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    logits = getattr(value, "logits", None)
    return logits if isinstance(logits, torch.Tensor) else None


def trace_forward(model: nn.Module, input_size: int, *, train: bool = False, meta_only: bool = False) -> TraceResult:
    """Run one dummy forward in train or eval mode and record what happened.

    The model's own train/eval mode, its weights and its buffers are left exactly as they
    were. ``meta_only`` skips the real-forward fallback (cheap probes of many sizes).
    """
    try:
        return _trace(model, input_size, train=train, on_meta=True)
    except Exception:
        if meta_only or has_meta_parameters(model):
            raise
        return _trace(model, input_size, train=train, on_meta=False)


def _trace(model: nn.Module, input_size: int, *, train: bool, on_meta: bool) -> TraceResult:
    result = TraceResult(main_outputs=[], extra_outputs=[], input_size=input_size)
    paths = {module: path for path, module in model.named_modules()}
    handles = []

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        path = paths.get(module)
        if path is None:
            return
        tensor = first_tensor(output)
        if path not in result.output_shapes:
            result.executed.append(path)
            if tensor is not None:
                result.output_shapes[path] = tuple(tensor.shape)
        if (
            tensor is not None
            and tensor.grad_fn is not None
            and not any(True for _ in module.children())
            and any(True for _ in module.parameters(recurse=False))
        ):
            result.producer_of[tensor.grad_fn] = path

    for module in paths:
        handles.append(module.register_forward_hook(hook))
    modes = {module: module.training for module in paths}
    model.train(train)
    try:
        device = "meta" if on_meta else _model_device(model)
        dtype = _model_dtype(model)
        images = torch.zeros(2, 3, input_size, input_size, device=device, dtype=dtype, requires_grad=True)
        result.images = images
        if on_meta:
            state = {
                name: torch.empty_like(tensor, device="meta")
                for name, tensor in list(model.named_parameters()) + list(model.named_buffers())
            }
        else:  # the model's own parameters, copies of its buffers: running statistics stay put
            state = {name: tensor.detach().clone() for name, tensor in model.named_buffers()}
        args, kwargs = ((), {"pixel_values": images}) if _is_hf_model(model) else ((images,), {})
        with torch.enable_grad():
            output = torch.func.functional_call(model, state, args, kwargs, strict=False)
        main, extras = split_outputs(output)
        result.main_outputs = [main]
        result.extra_outputs = extras
    finally:
        for handle in handles:
            handle.remove()
        for module, was_training in modes.items():
            module.training = was_training
    return result


def _is_hf_model(model: nn.Module) -> bool:
    return any(cls.__module__.startswith("transformers.") for cls in type(model).__mro__)


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _model_dtype(model: nn.Module) -> torch.dtype:
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32
