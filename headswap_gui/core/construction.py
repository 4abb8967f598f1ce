"""Build a model's structure without allocating or initialising its weights.

Inspecting ``regnet_y_128gf`` must not allocate 2.6 GB and run Kaiming init on it. Parameters
are moved to the ``meta`` device the moment a module registers them, so the initialisers that
run afterwards touch no memory. Buffers stay real (they are small, and some — relative
position indices — are computed in ``__init__`` and needed by the forward pass). This works
for builders that compute with tensors (RegNet's width schedule), where a plain
``with torch.device("meta")`` fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Within this block, every parameter a module registers lands on the ``meta`` device."""
    original = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None and param.device.type != "meta":
            kind = type(module._parameters[name])
            module._parameters[name] = kind(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register_on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


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
    missing. Parameters still on ``meta`` afterwards are an error: they have no values."""
    result = model.load_state_dict(state, strict=strict, assign=True)
    still_meta = [name for name, p in model.named_parameters() if p.device.type == "meta"]
    if still_meta:
        raise ValueError(f"no weights for {', '.join(still_meta[:5])}")
    return list(result.missing_keys)
