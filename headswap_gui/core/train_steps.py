"""One epoch of optimisation steps, the same for a whole model and for a head on cached
features: :func:`train_one_epoch`, as in torchvision's reference scripts.

The loop knows nothing of run folders, freezing or schedules beyond stepping the one it is
given; the orchestrator (:mod:`training`) and the streaming cache (:mod:`streaming`) both
drive it, so a step means the same thing everywhere (loss with auxiliary heads, gradient
clipping, fp16 scaling, throttled :class:`StepMetrics`, a stop check after every step).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .devices import autocast_context, to_device_batch
from .distributed import AgreedStop
from .events import StepMetrics
from .tracing import split_outputs

AUX_LOSS_WEIGHT = 0.4  # loss = main + 0.4 · mean(auxiliary losses), as in GoogLeNet/Inception


def compute_loss(output: Any, targets: torch.Tensor, criterion: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, main logits)`` for a model's raw output: the main loss, plus
    ``AUX_LOSS_WEIGHT`` × the mean of the auxiliary losses for models that return auxiliary
    logits in training mode (GoogLeNet, Inception v3)."""
    logits, aux = split_outputs(output)
    loss = criterion(logits, targets)
    if aux:
        loss = loss + AUX_LOSS_WEIGHT * torch.stack([criterion(a, targets) for a in aux]).mean()
    return loss, logits


def build_criterion(
    labels: Sequence[int], num_classes: int, *, class_weights: bool, label_smoothing: float, device: torch.device,
) -> nn.CrossEntropyLoss:
    """The run's loss: cross-entropy, with ``class_weights`` inversely proportional to how
    often each class occurs in ``labels`` (the training split), so a rare class counts as
    much as a common one."""
    weight = None
    if class_weights:
        counts = np.bincount(list(labels), minlength=num_classes).astype(np.float64)
        inverse = np.divide(counts.sum(), num_classes * counts, out=np.zeros_like(counts), where=counts > 0)
        weight = torch.tensor(inverse, dtype=torch.float32, device=device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)


@dataclass
class Optimisation:
    """What one step needs besides the batch: the forward (a whole model or a head), the loss,
    the optimizer with its optional fp16 scaler and per-step schedule, and where it runs."""

    forward: Callable[[torch.Tensor], Any]
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    schedule: Any = None  # stepped after every optimizer step when given
    scaler: torch.amp.GradScaler | None = None
    grad_clip: float | None = None
    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False
    # On the CPU a loss check per step costs nothing; on CUDA it would synchronise every step,
    # so there the throttled reports check instead.
    check_every_step: bool = True
    # Under DDP, step i's loss is multiplied by step_weights[i] before backward, so that the
    # ranks' unevenly split parts of a batch add up to that batch's mean (distributed.loss_weights).
    step_weights: Sequence[float] | None = None

    def trainable(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]


@dataclass(frozen=True)
class EpochOutcome:
    """How :func:`train_one_epoch` ended, and its figures."""

    status: Literal["done", "stopped", "diverged"]
    global_step: int
    lr: float  # the learning rate of the last step taken
    loss: float = math.nan  # mean training loss over the epoch
    accuracy: float = math.nan
    images_per_second: float = math.nan
    seen: int = 0
    step: int | None = None  # where it diverged


def train_one_epoch(
    opt: Optimisation,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    epoch: int,
    steps_per_epoch: int,
    global_step: int,
    stop: threading.Event | AgreedStop,
    max_events_per_second: float = 10.0,
) -> Any:
    """Take one step per batch; a generator of :class:`StepMetrics` (at most
    ``max_events_per_second``, the last step always reported) returning an
    :class:`EpochOutcome`. ``epoch`` is 1-based, as in the events; the caller sets train/eval
    modes. A NaN or infinite loss ends the epoch as "diverged", a set ``stop`` as "stopped".

    With an :class:`AgreedStop` (under torchrun) both are agreed by all ranks after every
    step, so every rank ends the epoch at the same step; the step reports stay rank-local."""
    agreed = isinstance(stop, AgreedStop)
    device = opt.device
    interval = 1.0 / max_events_per_second
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    window_loss = torch.zeros((), device=device)
    seen = window_images = 0
    started = window_started = last_event = time.perf_counter()
    amp = autocast_context(device, opt.autocast_dtype)
    optimizer, scaler = opt.optimizer, opt.scaler
    trainable = opt.trainable() if opt.grad_clip is not None else []
    lr = float(optimizer.param_groups[0]["lr"])
    for step, (inputs, targets) in enumerate(batches, 1):
        inputs = to_device_batch(inputs, device, opt.channels_last)
        targets = targets.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with amp:
            loss, logits = compute_loss(opt.forward(inputs), targets, opt.criterion)
        scaled = loss if opt.step_weights is None else loss * opt.step_weights[step - 1]
        if scaler is not None:
            scaler.scale(scaled).backward()
            if opt.grad_clip is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(trainable, opt.grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            scaled.backward()
            if opt.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(trainable, opt.grad_clip)
            optimizer.step()
        lr = float(optimizer.param_groups[0]["lr"])
        if opt.schedule is not None:
            opt.schedule.step()
        global_step += 1
        n = int(targets.shape[0])
        detached = loss.detach().float() * n
        loss_sum += detached
        window_loss += detached
        correct += (logits.detach().argmax(dim=1) == targets).sum()
        seen += n
        window_images += n
        diverged = (opt.check_every_step or agreed) and not math.isfinite(float(detached))
        if diverged and not agreed:
            return EpochOutcome("diverged", global_step, lr, step=step)
        now = time.perf_counter()
        if not diverged and (step == steps_per_epoch or now - last_event >= interval):
            mean_loss = float(window_loss) / window_images
            if not math.isfinite(mean_loss) and not agreed:
                return EpochOutcome("diverged", global_step, lr, step=step)
            diverged = not math.isfinite(mean_loss)
            if not diverged:
                yield StepMetrics(
                    epoch=epoch, step=step, steps_per_epoch=steps_per_epoch, global_step=global_step,
                    loss=mean_loss, lr=lr, images_per_second=window_images / max(now - window_started, 1e-9),
                )
            window_loss.zero_()
            window_images = 0
            window_started = last_event = time.perf_counter()
        if isinstance(stop, AgreedStop):
            stopping, diverged = stop.agree(diverged)
            if diverged:
                return EpochOutcome("diverged", global_step, lr, step=step)
        else:
            stopping = stop.is_set()
        if stopping:
            return EpochOutcome("stopped", global_step, lr)
    if seen == 0:
        return EpochOutcome("done", global_step, lr)
    elapsed = max(time.perf_counter() - started, 1e-9)
    return EpochOutcome("done", global_step, lr, float(loss_sum) / seen, int(correct) / seen, seen / elapsed, seen)


def drain(generator: Any) -> Any:
    """Run a generator to its end, dropping what it yields, and return its return value (the
    streaming cache's head passes report only their validation, not every step)."""
    while True:
        try:
            next(generator)
        except StopIteration as end:
            return end.value
