"""Which image size a model takes, when nobody said.

A model from timm or torchvision comes with its size; a user's own model file does not. A
224-pixel dummy pass is wrong for a ViT at 384 or 518, a Swin-V2 at 256 or a model that wants
a size divisible by 56, and fails with the model's own assertion. So the size is taken from
the model when it says (its ``patch_embed.img_size``, ``img_size``/``image_size``, a Hugging
Face ``config.image_size``, timm's ``pretrained_cfg``), checked with a pass on ``meta``, and
otherwise found by trying a short ladder of common sizes — always reporting which it used.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn

from .errors import HeadNotFoundError, InputSizeError
from .preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

if TYPE_CHECKING:
    from .tracing import TraceResult

__all__ = [
    "SIZE_LADDER",
    "SizeFound",
    "accepts_input_size",
    "declared_input_size",
    "find_input_size",
    "fit_input_size",
    "model_preprocessing",
]

# Common training sizes, most common first; the probe stops at the first that runs.
SIZE_LADDER = (224, 256, 384, 448, 518, 192, 288, 320, 160, 128, 512, 336, 240, 260, 300, 380, 96, 64)

_SIZE_ATTRIBUTES = ("img_size", "image_size", "input_size")


@dataclass(frozen=True)
class SizeFound:
    """The input side a dummy pass ran at, and how it was chosen (for people)."""

    size: int
    how: str
    trace: TraceResult | None = field(default=None, compare=False, repr=False)  # the eval pass that ran


def declared_input_size(model: nn.Module) -> tuple[int, str] | None:
    """The square input side the model states about itself, with where it says so.

    Structural attributes come first: a ViT built at 128 px keeps ``pretrained_cfg`` of the
    224-px family but its ``patch_embed.img_size`` is 128. Outermost modules win, so a model
    wrapped in a container is read like the model itself.
    """
    for path, module in model.named_modules():
        for name in _SIZE_ATTRIBUTES:
            side = _side(getattr(module, name, None))
            if side is not None and not isinstance(getattr(module, name), dict):
                return side, f"{path + '.' if path else ''}{name}"
        config = getattr(module, "config", None)
        side = _side(getattr(config, "image_size", None)) if config is not None else None
        if side is not None:
            return side, f"{path + '.' if path else ''}config.image_size"
    for path, module in model.named_modules():
        cfg = _timm_cfg(module)
        if cfg is not None:
            side = _side(cfg.get("input_size"))
            if side is not None:
                return side, f"{path + '.' if path else ''}pretrained_cfg['input_size']"
    return None


def find_input_size(model: nn.Module, preferred: int | None = None) -> SizeFound:
    """The size to run ``model`` at: ``preferred`` or the declared size if a pass on
    ``meta`` runs there, else the first size of :data:`SIZE_LADDER` that runs.

    Raises :class:`HeadNotFoundError` naming the sizes tried when none runs (the model may
    want non-square or non-image input).
    """
    declared = declared_input_size(model)
    candidates: list[tuple[int, str]] = []
    if preferred:
        candidates.append((int(preferred), "as given"))
    if declared is not None:
        candidates.append((declared[0], f"declared by the model ({declared[1]})"))
    candidates += [(size, "the first common size a dummy pass ran at") for size in SIZE_LADDER]
    candidates = _unique(candidates)
    for size, how in candidates:
        trace = _meta_trace(model, size)
        if trace is not None:
            return SizeFound(size, how, trace)
    from .construction import has_meta_parameters
    from .tracing import trace_forward

    if not has_meta_parameters(model):  # some models have ops without meta kernels: a real pass decides
        for size, how in candidates[:3]:
            try:
                trace = trace_forward(model, size)
            except Exception:  # noqa: BLE001 - not at this size either
                continue
            return SizeFound(size, f"{how}; checked with a real pass", trace)
    raise HeadNotFoundError(
        f"the model did not run on square images of any common size ({', '.join(str(c[0]) for c in candidates)} px); "
        "it may need another input shape — name the head layer yourself"
    )


def accepts_input_size(model: nn.Module, size: int) -> bool:
    """Whether a forward pass at ``size``×``size`` runs (on ``meta``: no weights touched)."""
    return _meta_trace(model, int(size)) is not None


def _meta_trace(model: nn.Module, size: int) -> TraceResult | None:
    from .tracing import trace_forward

    try:
        return trace_forward(model, size, meta_only=True)
    except Exception:  # noqa: BLE001 - any failure means "not at this size"
        return None


def fit_input_size(model: nn.Module, size: int, own_size: int) -> str | None:
    """Make sure ``model`` runs at ``size``: nothing to do, or timm's ``set_input_size``
    (position embeddings resampled, as timm does for fine-tuning at another resolution).

    Returns a note for the run's log when the model was changed. Raises
    :class:`InputSizeError`, naming sizes that do work, when neither is possible. Checked on
    ``meta``; a model that cannot run on ``meta`` even at ``own_size`` is left to the run.
    """
    if accepts_input_size(model, size) or not accepts_input_size(model, own_size):
        return None
    for path, module in model.named_modules():
        setter = getattr(module, "set_input_size", None)
        if not callable(setter):
            continue
        try:
            setter(img_size=(size, size))
        except Exception:  # noqa: BLE001 - a model's own resize may refuse this size
            break
        if accepts_input_size(model, size):
            where = f"{path}." if path else ""
            return f"the model was set to {size}×{size} px input ({where}set_input_size resampled its position embeddings)"
        break
    works = [s for s in sorted(set(SIZE_LADDER) | {own_size}) if accepts_input_size(model, s)]
    raise InputSizeError(
        f"the model does not run at {size}×{size} px; it runs at {', '.join(f'{s} px' for s in works) or f'{own_size} px'}"
        f" — choose one of those, or leave the image size to the model ({own_size} px)"
    )


def model_preprocessing(model: nn.Module, size: SizeFound | None = None) -> Preprocessing:
    """Preprocessing from the model's own metadata (timm's ``pretrained_cfg`` anywhere inside
    it: mean, std, crop, interpolation) at the size it runs at."""
    size = size or find_input_size(model)
    cfg = next((c for c in (_timm_cfg(m) for m in model.modules()) if c is not None), None) or {}
    crop = float(cfg.get("crop_pct") or 0.875)
    return Preprocessing(
        input_size=size.size,
        resize_size=max(size.size, int(size.size / crop + 0.5)),
        interpolation=str(cfg.get("interpolation") or "bilinear"),
        mean=tuple(float(v) for v in cfg.get("mean") or IMAGENET_MEAN),  # type: ignore[arg-type]
        std=tuple(float(v) for v in cfg.get("std") or IMAGENET_STD),  # type: ignore[arg-type]
    )


def _timm_cfg(module: nn.Module) -> dict[str, Any] | None:
    cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None)
    return cfg if isinstance(cfg, dict) else None


def _side(value: Any) -> int | None:
    """A square side from an int, an (H, W) or a (C, H, W); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, int) for v in value):
        sides = list(value[-2:]) if len(value) >= 2 else list(value)
        if len(set(sides)) == 1 and sides[0] > 0:
            return int(sides[0])
    return None


def _unique(candidates: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
    seen: set[int] = set()
    out = []
    for size, how in candidates:
        if size not in seen:
            seen.add(size)
            out.append((size, how))
    return out
