"""The small immutable events that long work yields.

Training (``training.fit``) and other long jobs are generators of these. The CLI renders them
as a progress bar and the window plots them, so both see exactly the same numbers. They hold
plain Python values only (no tensors), so they can cross threads and be stored or printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["completed", "stopped", "early-stopped", "diverged", "failed"]


@dataclass(frozen=True)
class RunStarted:
    """Training is about to take its first step."""

    class_names: tuple[str, ...]
    train_size: int
    val_size: int
    device: str
    features_cached: bool
    epochs: int
    steps_per_epoch: int
    start_epoch: int
    run_dir: str | None


@dataclass(frozen=True)
class Progress:
    """Progress of a stage, e.g. computing the backbone feature cache; ``rate`` (units of
    ``done`` per second) and ``eta_seconds`` where the job knows them."""

    stage: str
    done: int
    total: int
    rate: float | None = None
    eta_seconds: float | None = None


@dataclass(frozen=True)
class Note:
    """Something the user should know mid-run (backbone unfrozen, batch size lowered, ...)."""

    message: str


@dataclass(frozen=True)
class StepMetrics:
    """One optimisation step; yielded at most about ten times a second."""

    epoch: int
    step: int
    steps_per_epoch: int
    global_step: int
    loss: float
    lr: float
    images_per_second: float


@dataclass(frozen=True)
class CacheValidation:
    """While the feature cache fills: the head, trained on the training features cached so far,
    measured on the whole validation split (whose features are cached first)."""

    cached: int  # training images cached so far
    total: int  # training images in all
    train_loss: float  # over the cached training features, after the head's passes
    val_loss: float
    val_accuracy: float
    seconds: float  # since the cache pass began


@dataclass(frozen=True)
class EpochMetrics:
    """The end of an epoch: training and validation figures."""

    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    images_per_second: float
    seconds: float
    eta_seconds: float
    is_best: bool


@dataclass(frozen=True)
class RunFinished:
    """The run is over; ``reason`` says why and ``message`` explains it to a person."""

    reason: FinishReason
    message: str
    best_epoch: int | None
    best_val_accuracy: float | None
    run_dir: str | None
    saved_epochs: int | None = None  # epochs the run folder holds, committed (None: no folder)


Event = RunStarted | Progress | Note | CacheValidation | StepMetrics | EpochMetrics | RunFinished
