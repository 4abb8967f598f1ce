"""Evaluation: a model's per-sample predictions over a loader, and the validation figures
a run reports after every epoch.

:func:`evaluate` is what the Results page, ``headswap evaluate`` and the label check show;
:func:`validate` is the cheap pass inside a run (loss and accuracy only), for a whole model or
for a head on cached features, so both paths count the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .devices import autocast_context, to_device_batch
from .distributed import AgreedStop
from .metrics import ClassReport, class_report, confusion_matrix
from .tracing import call_model, split_outputs


@dataclass(frozen=True)
class EvalResult:
    """Per-sample results of :func:`evaluate`, in the loader's sample order."""

    targets: np.ndarray  # (N,) int64
    predictions: np.ndarray  # (N,) int64
    probabilities: np.ndarray  # (N, C) float32, softmax
    losses: np.ndarray  # (N,) float32, cross-entropy per sample

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.predictions == self.targets)) if self.targets.size else float("nan")

    @property
    def loss(self) -> float:
        return float(np.mean(self.losses)) if self.losses.size else float("nan")

    @property
    def num_classes(self) -> int:
        return int(self.probabilities.shape[1]) if self.probabilities.ndim == 2 else 0

    def confusion(self) -> np.ndarray:
        """Rows = true class, columns = predicted class."""
        return confusion_matrix(self.targets, self.predictions, self.num_classes)

    def report(self) -> ClassReport:
        """Per-class precision, recall and F1."""
        return class_report(self.confusion())

    def misclassified(self) -> np.ndarray:
        """Indices of the wrong predictions, highest loss first (for the review gallery)."""
        wrong = np.flatnonzero(self.predictions != self.targets)
        return wrong[np.argsort(-self.losses[wrong], kind="stable")]


def evaluate(
    model: nn.Module,
    loader: Any,
    device: str | torch.device,
    *,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    stop: threading.Event | None = None,
) -> EvalResult | None:
    """Run ``model`` in eval mode over ``loader`` (``(images, labels)`` batches, not shuffled)
    and return per-sample predictions, probabilities and losses; ``None`` if ``stop`` was set.
    The model is moved to ``device`` if it is not there."""
    device = torch.device(device) if isinstance(device, str) else device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    first = next(model.parameters(), None)
    if first is not None and first.device != device:
        model.to(device)
    model.eval()
    targets, predictions, probabilities, losses = [], [], [], []
    for batch in _batch_logits(model_logits(model), loader, device, autocast_dtype, channels_last, stop):
        if batch is None:
            return None
        logits, labels = batch
        losses.append(F.cross_entropy(logits, labels, reduction="none").cpu())
        probabilities.append(logits.softmax(dim=1).cpu())
        predictions.append(logits.argmax(dim=1).cpu())
        targets.append(labels.cpu())
    if not targets:
        return EvalResult(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0), np.float32), np.zeros(0, np.float32))
    return EvalResult(
        torch.cat(targets).numpy().astype(np.int64),
        torch.cat(predictions).numpy().astype(np.int64),
        torch.cat(probabilities).numpy().astype(np.float32),
        torch.cat(losses).numpy().astype(np.float32),
    )


def validate(
    forward: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    *,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    stop: threading.Event | AgreedStop | None = None,
) -> tuple[float, float] | None:
    """``(mean loss, accuracy)`` of ``forward`` (inputs → main logits, the caller has put the
    model in eval mode) over ``batches``; ``None`` if ``stop`` was set (an :class:`AgreedStop`
    is read after every batch, so every rank must see the same number of batches)."""
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for batch in _batch_logits(forward, batches, device, autocast_dtype, channels_last, stop):
        if batch is None:
            return None
        logits, targets = batch
        loss_sum += F.cross_entropy(logits, targets, reduction="sum")
        correct += (logits.argmax(dim=1) == targets).sum()
        seen += int(targets.shape[0])
    return float(loss_sum) / seen, int(correct) / seen


def _batch_logits(
    forward: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    channels_last: bool,
    stop: threading.Event | AgreedStop | None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor] | None]:
    """``(fp32 logits, targets)`` on ``device`` for each batch, without gradients; one
    ``None`` and the end when ``stop`` is set (it is read before every batch)."""
    amp = autocast_context(device, autocast_dtype)
    for inputs, targets in batches:
        if stop is not None and stop.is_set():
            yield None
            return
        inputs = to_device_batch(inputs, device, channels_last)
        targets = targets.to(device, non_blocking=True)
        with torch.no_grad(), amp:  # entered per batch: a grad mode held across a yield leaks into the caller
            logits = forward(inputs)
        yield logits.float(), targets


def model_logits(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A forward that returns a whole model's main logits (auxiliary outputs dropped)."""
    return lambda inputs: split_outputs(call_model(model, inputs))[0]
