"""Accuracy, confusion matrix, per-class report and smoothing, checked against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import precision_recall_fscore_support

from headswap_gui.core.metrics import accuracy, class_report, confusion_matrix, ema_smooth


def test_confusion_and_report_match_scikit_learn():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 4, 200)
    predictions = np.where(rng.random(200) < 0.7, targets, rng.integers(0, 4, 200))
    predictions[predictions == 3] = 2  # class 3 is never predicted: precision 0, not NaN
    confusion = confusion_matrix(targets, predictions, 5)  # class 4 has no images at all
    assert confusion.dtype == np.int64 and confusion.shape == (5, 5)
    assert np.array_equal(confusion, sk_confusion(targets, predictions, labels=range(5)))
    report = class_report(confusion)
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predictions, labels=range(5), zero_division=0
    )
    assert np.allclose(report.precision, precision) and np.allclose(report.recall, recall)
    assert np.allclose(report.f1, f1) and np.array_equal(report.support, support)
    assert report.accuracy == pytest.approx(accuracy(targets, predictions))
    assert report.macro_f1 == pytest.approx(np.mean(f1[:4]))
    rows = report.rows(["a", "b", "c", "d", "e"])
    assert rows[3] == {"class": "d", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": int(support[3])}


def test_accuracy_edge_cases():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    assert np.isnan(accuracy([], []))
    with pytest.raises(ValueError):
        accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="0..2"):
        confusion_matrix([0, 3], [0, 1], 3)


def test_ema_smoothing_is_debiased_and_survives_nan():
    assert np.array_equal(ema_smooth([1.0, 2.0, 3.0], 0.0), [1.0, 2.0, 3.0])
    smoothed = ema_smooth([5.0, 5.0, 5.0], 0.9)
    assert np.allclose(smoothed, 5.0)  # no pull towards zero at the start
    values = ema_smooth([1.0, float("nan"), 1.0, 3.0], 0.5)
    assert np.isnan(values[1]) and np.isfinite(values[[0, 2, 3]]).all() and 1.0 < values[3] < 3.0
    with pytest.raises(ValueError):
        ema_smooth([1.0], 1.0)
