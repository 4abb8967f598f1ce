"""Classification metrics on plain numpy arrays: accuracy, confusion matrix, per-class
precision / recall / F1, and the TensorBoard-style smoothing the plots use.

Everything here takes integer label arrays (true labels and predicted labels, both in class
order ``0..num_classes-1``) so the CLI, the window and the tests compute the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def accuracy(targets: Sequence[int] | np.ndarray, predictions: Sequence[int] | np.ndarray) -> float:
    """Fraction of predictions equal to the targets; ``nan`` for no samples."""
    targets, predictions = _labels(targets), _labels(predictions)
    _check_same_length(targets, predictions)
    if targets.size == 0:
        return float("nan")
    return float(np.mean(targets == predictions))


def confusion_matrix(
    targets: Sequence[int] | np.ndarray, predictions: Sequence[int] | np.ndarray, num_classes: int
) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 counts: row = true class, column = predicted."""
    targets, predictions = _labels(targets), _labels(predictions)
    _check_same_length(targets, predictions)
    if targets.size and (min(targets.min(), predictions.min()) < 0 or max(targets.max(), predictions.max()) >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    flat = targets * num_classes + predictions
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes).astype(np.int64)


@dataclass(frozen=True)
class ClassReport:
    """Per-class figures from a confusion matrix (arrays indexed by class)."""

    precision: np.ndarray  # of the images predicted as the class, the fraction that are
    recall: np.ndarray  # of the images of the class, the fraction found
    f1: np.ndarray
    support: np.ndarray  # true images per class
    accuracy: float

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the classes that have images (classes without any are left out)."""
        present = self.support > 0
        return float(np.mean(self.f1[present])) if present.any() else float("nan")

    def rows(self, class_names: Sequence[str]) -> list[dict[str, object]]:
        """One dict per class, for a table."""
        return [
            {
                "class": name,
                "precision": float(self.precision[i]),
                "recall": float(self.recall[i]),
                "f1": float(self.f1[i]),
                "support": int(self.support[i]),
            }
            for i, name in enumerate(class_names)
        ]


def class_report(confusion: np.ndarray) -> ClassReport:
    """Precision, recall and F1 per class. A class never predicted (or with no images) gets 0
    where the ratio is undefined, as scikit-learn's ``zero_division=0`` does."""
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positive = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, support, out=np.zeros_like(true_positive), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    total = confusion.sum()
    acc = float(true_positive.sum() / total) if total else float("nan")
    return ClassReport(precision, recall, f1, support.astype(np.int64), acc)


def ema_smooth(values: Sequence[float] | np.ndarray, weight: float = 0.6) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average with debiasing, so the first
    points are not pulled towards zero. ``weight`` 0 returns the values; NaN/inf values are
    passed through without poisoning the rest of the curve."""
    if not 0.0 <= weight < 1.0:
        raise ValueError("weight must be in [0, 1)")
    data = np.asarray(values, dtype=np.float64)
    smoothed = np.empty_like(data)
    last, count = 0.0, 0
    for i, value in enumerate(data):
        if not np.isfinite(value):
            smoothed[i] = value
            continue
        last = last * weight + (1.0 - weight) * value
        count += 1
        smoothed[i] = last / (1.0 - weight**count) if weight else value
    return smoothed


def _labels(values: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(-1)


def _check_same_length(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{a.size} targets but {b.size} predictions")
