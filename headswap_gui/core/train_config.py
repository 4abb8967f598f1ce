"""What decides how a run trains: :class:`TrainConfig`, validated on creation.

Kept apart from the loop that uses it, so the window's form, the CLI's flags, a run's
``headswap.json`` and a config file all read and write one dataclass, and checking a setting
never needs the training machinery.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from .data import AUGMENT_PRESETS
from .devices import PRECISIONS
from .errors import HeadswapError
from .freezing import FREEZE_POLICIES, OPTIMIZERS, SCHEDULES

CACHE_MODES = ("auto", "off")
MAX_IMAGE_SIZE = 2048  # a 2048² batch of 32 is 1.6 GB of float input already
RESUME_MAY_CHANGE = frozenset(
    {"epochs", "patience", "device", "precision", "workers", "cpu_threads", "channels_last", "max_step_events_per_second"}
)
"""Settings a resumed run may change: how long and where it runs, not what it learns."""


def suggested_lr(freeze: str) -> float:
    """A learning rate that works for ``freeze`` with AdamW: a new head alone (a linear probe
    on frozen features) needs about ten times the step of fine-tuning pretrained layers, which
    a large step would wreck (measured on the digits demo: 1e-3 → 87 %, 1e-2 → 93 % in 5 epochs)."""
    return 1e-2 if freeze == "head" else 1e-3


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a run trains. Validated on creation
    (:class:`HeadswapError` with a message that names the field)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    optimizer: str = "adamw"  # "adamw" | "sgd" (momentum 0.9)
    schedule: str = "cosine"  # "cosine" (with warm-up) | "onecycle" | "constant"
    warmup_epochs: float = 1.0  # cosine only
    label_smoothing: float = 0.0
    class_weights: bool = False  # weight the loss by inverse class frequency
    grad_clip: float | None = None  # max gradient norm
    freeze: str = "head"  # "head" | "gradual" | "last-k" | "full"
    unfreeze_after: int = 2  # gradual: epochs of head-only training
    last_k: int = 1  # last-k: backbone blocks that train
    backbone_lr_factor: float = 0.1  # backbone lr = lr × this (gradual after unfreeze, last-k, full)
    augment: str = "none"  # "none" | "light" | "strong"
    image_size: int | None = None  # override the model's input size (e.g. 32 for 8×8 digits)
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N" | "mps"
    precision: str = "auto"  # "auto" (bf16 where the GPU has it) | "fp32" | "bf16" | "fp16"; CUDA only
    channels_last: bool | None = None  # None: on CUDA and CPU (measured 1.15–1.5× faster on CPU too)
    workers: int = 0  # DataLoader worker processes (spawned); 0 decodes in this thread
    cpu_threads: int | None = None  # CPU compute threads; None leaves one core for the window
    patience: int | None = None  # early stopping after this many epochs without improvement
    cache_features: str = "auto"  # "auto": cache backbone features when frozen and augment == "none"
    stream_cache: bool = True  # with the cache: the head learns while the features stream in
    max_step_events_per_second: float = 10.0

    def __post_init__(self) -> None:
        problems = _config_problems(self)
        if problems:
            raise HeadswapError("invalid training settings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict`; unknown keys (from a newer version) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def _config_problems(c: TrainConfig) -> list[str]:
    problems = []

    def check(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    def choice(name: str, value: str, options: Sequence[str]) -> None:
        check(value in options, f"{name} must be one of {', '.join(options)}, not {value!r}")

    check(isinstance(c.epochs, int) and c.epochs >= 1, f"epochs must be ≥ 1, got {c.epochs}")
    check(isinstance(c.batch_size, int) and c.batch_size >= 1, f"batch_size must be ≥ 1, got {c.batch_size}")
    check(math.isfinite(c.lr) and c.lr > 0, f"lr must be a positive number, got {c.lr}")
    check(c.cpu_threads is None or c.cpu_threads >= 1, f"cpu_threads must be ≥ 1, got {c.cpu_threads}")
    check(c.weight_decay >= 0, f"weight_decay must be ≥ 0, got {c.weight_decay}")
    choice("optimizer", c.optimizer, OPTIMIZERS)
    choice("schedule", c.schedule, SCHEDULES)
    check(c.warmup_epochs >= 0, f"warmup_epochs must be ≥ 0, got {c.warmup_epochs}")
    check(0.0 <= c.label_smoothing < 1.0, f"label_smoothing must be in [0, 1), got {c.label_smoothing}")
    check(c.grad_clip is None or c.grad_clip > 0, f"grad_clip must be positive or None, got {c.grad_clip}")
    choice("freeze", c.freeze, FREEZE_POLICIES)
    check(c.unfreeze_after >= 0, f"unfreeze_after must be ≥ 0, got {c.unfreeze_after}")
    check(c.last_k >= 1, f"last_k must be ≥ 1, got {c.last_k}")
    check(c.backbone_lr_factor >= 0, f"backbone_lr_factor must be ≥ 0, got {c.backbone_lr_factor}")
    choice("augment", c.augment, AUGMENT_PRESETS)
    check(
        c.image_size is None or (isinstance(c.image_size, int) and 8 <= c.image_size <= MAX_IMAGE_SIZE),
        f"image_size must be between 8 and {MAX_IMAGE_SIZE} pixels, got {c.image_size}",
    )
    check(0.0 < c.val_fraction < 1.0, f"val_fraction must be between 0 and 1, got {c.val_fraction}")
    check(isinstance(c.seed, int) and c.seed >= 0, f"seed must be an integer ≥ 0, got {c.seed}")
    device = (c.device or "").lower()
    check(
        device in ("auto", "cpu", "cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit()),
        f"device must be auto, cpu, cuda, cuda:N or mps, not {c.device!r}",
    )
    choice("precision", c.precision, PRECISIONS)
    check(isinstance(c.workers, int) and c.workers >= 0, f"workers must be ≥ 0, got {c.workers}")
    check(c.patience is None or c.patience >= 1, f"patience must be ≥ 1 or None, got {c.patience}")
    choice("cache_features", c.cache_features, CACHE_MODES)
    check(c.max_step_events_per_second > 0, "max_step_events_per_second must be positive")
    return problems


def resume_settings_problems(recorded: dict[str, Any], config: TrainConfig) -> list[str]:
    """How ``config`` departs from a run's recorded training settings in ways a resume must
    not: each as "name: X in the run, Y now"."""
    problems = []
    for name, value in config.to_dict().items():
        if name in RESUME_MAY_CHANGE or name not in recorded:
            continue
        if recorded[name] != value and not (isinstance(value, float) and math.isclose(recorded[name], value)):
            problems.append(f"{name}: {recorded[name]!r} in the run, {value!r} now")
    return problems
