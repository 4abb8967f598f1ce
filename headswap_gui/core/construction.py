"""Build a model's structure without allocating or initialising its weights.

Inspecting ``regnet_y_128gf`` must not allocate 2.6 GB and run Kaiming init on it. Parameters
are moved to the ``meta`` device the moment a module registers them, so the initialisers that
run afterwards touch no memory. Buffers stay real (they are small, and some — relative
position indices — are computed in ``__init__`` and needed by the forward pass). This works
for builders that compute with tensors (RegNet's width schedule), where a plain
``with torch.device("meta")`` fails.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
from torch import nn
from torch.nn.modules.module import register_module_parameter_registration_hook

T = TypeVar("T")

_building = threading.local()  # .depth > 0 while this thread builds a structure-only model
_hook_lock = threading.Lock()
_hook_installed = False


def _to_meta_while_building(module: nn.Module, name: str, param: nn.Parameter | None) -> nn.Parameter | None:
    """torch's parameter-registration hook: a parameter registered by *this* thread inside
    :func:`parameters_on_meta` is replaced by its ``meta`` twin; any other thread's
    parameters pass untouched."""
    if getattr(_building, "depth", 0) and param is not None and param.device.type != "meta":
        return type(param)(param.to("meta"), requires_grad=param.requires_grad)
    return None


def _install_hook() -> None:
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            register_module_parameter_registration_hook(_to_meta_while_building)
            _hook_installed = True


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Within this block, every parameter a module registers *on this thread* lands on the
    ``meta`` device.

    torch's own registration hook does the move, and it looks at a thread-local flag: no torch
    class is patched, so a layer another thread creates meanwhile gets real weights, and
    overlapping or out-of-order builds cannot leave anything changed behind.
    """
    _install_hook()
    _building.depth = getattr(_building, "depth", 0) + 1
    try:
        yield
    finally:
        _building.depth -= 1


def build_empty(builder: Callable[[], T]) -> T:
    """Call ``builder`` with parameters created on ``meta``; builders that compute with
    their own freshly made parameters (a few timm models) are built for real instead."""
    try:
        with parameters_on_meta():
            return builder()
    except (NotImplementedError, RuntimeError):
        return builder()


def has_meta_parameters(model: nn.Module) -> bool:
    return any(p.device.type == "meta" for p in model.parameters())


def materialize(model: nn.Module, state: dict[str, torch.Tensor], *, strict: bool = True) -> list[str]:
    """Give an empty (meta) model real weights from ``state``; returns the keys that were
    missing. Parameters still on ``meta`` afterwards are an error: they have no values.

    Every floating-point tensor is first cast to the dtype of the parameter or buffer it
    replaces: assigning keeps a tensor's dtype, so an fp16 or bf16 checkpoint would otherwise
    turn the model half precision, which breaks fp32 training (GradScaler refuses fp16
    gradients). Integer buffers (``num_batches_tracked``) keep theirs."""
    own = model.state_dict()
    state = {
        key: tensor.to(own[key].dtype)
        if key in own and tensor.is_floating_point() and own[key].is_floating_point()
        else tensor
        for key, tensor in state.items()
    }
    result = model.load_state_dict(state, strict=strict, assign=True)
    still_meta = [name for name, p in model.named_parameters() if p.device.type == "meta"]
    if still_meta:
        raise ValueError(f"no weights for {', '.join(still_meta[:5])}")
    return list(result.missing_keys)
