"""TrainingPlotsView: buffering, EMA, best epoch, NaN tolerance, exports; redraws (coalesced, at
most four a second, only while visible) and the loss plot's ranges."""

from __future__ import annotations

import csv
import math
import time

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication, QTabWidget, QWidget

from headswap_gui.core.events import CacheValidation, EpochMetrics, Note, RunFinished, RunStarted, StepMetrics
from headswap_gui.gui.plots import CSV_COLUMNS, TrainingPlotsView, ema_smooth


def step(
    global_step: int, loss: float, *, epoch: int = 1, steps_per_epoch: int = 10
) -> StepMetrics:
    return StepMetrics(
        epoch=epoch,
        step=global_step % steps_per_epoch,
        steps_per_epoch=steps_per_epoch,
        global_step=global_step,
        loss=loss,
        lr=1e-3,
        images_per_second=100.0,
    )


def epoch_metrics(
    epoch: int, val_accuracy: float, is_best: bool, val_loss: float = 0.5
) -> EpochMetrics:
    return EpochMetrics(
        epoch=epoch,
        epochs=5,
        train_loss=0.4,
        train_accuracy=0.8,
        val_loss=val_loss,
        val_accuracy=val_accuracy,
        lr=1e-3,
        images_per_second=100.0,
        seconds=1.0,
        eta_seconds=4.0,
        is_best=is_best,
    )


@pytest.fixture
def view(qtbot) -> TrainingPlotsView:
    widget = TrainingPlotsView()
    qtbot.addWidget(widget)
    widget.resize(800, 600)
    return widget


def test_counts_and_best_epoch(view: TrainingPlotsView) -> None:
    for i in range(1, 1001):  # past the initial capacity, so the buffers grow
        view.add_event(step(i, 1.0 / i))
    view.add_event(Note("ignored"))
    view.add_event(epoch_metrics(1, 0.5, True))
    view.add_event(epoch_metrics(2, 0.7, True))
    view.add_event(epoch_metrics(3, 0.6, False))
    assert view.step_count() == 1000
    assert view.epoch_count() == 3
    assert view.best_epoch() == 2
    assert view.raw_losses()[-1] == pytest.approx(1.0 / 1000)

    view.clear()
    assert (view.step_count(), view.epoch_count(), view.best_epoch()) == (0, 0, None)


def test_curves_receive_data_after_coalesced_refresh(qtbot, view: TrainingPlotsView) -> None:
    view.show()  # a hidden view buffers without drawing (see the visibility tests below)
    qtbot.waitExposed(view)
    for i in range(1, 51):
        view.add_event(step(i, 2.0))
    def curve_has_all_points() -> bool:
        x, _y = view._smooth_curve.getData()
        return x is not None and len(x) == 50

    qtbot.waitUntil(curve_has_all_points, timeout=2000)


def test_ema_of_constant_is_constant(view: TrainingPlotsView) -> None:
    for i in range(1, 301):
        view.add_event(step(i, 0.75))
    np.testing.assert_allclose(view.smoothed_losses(), 0.75, rtol=1e-12)
    for weight in (0.0, 0.3, 0.99):
        view.set_smoothing(weight)
        assert view.smoothing() == pytest.approx(weight)
        np.testing.assert_allclose(view.smoothed_losses(), 0.75, rtol=1e-12)


def test_ema_matches_tensorboard_formula() -> None:
    values = [1.0, 3.0, float("nan"), 2.0]
    w = 0.5
    # last = 0.5*0 + 0.5*1 = 0.5 -> /0.5 = 1; last = 0.25 + 1.5 = 1.75 -> /0.75
    expected_2 = 1.75 / 0.75
    last3 = 1.75 * 0.5 + 0.5 * 2.0
    smoothed = ema_smooth(values, w)
    assert smoothed[0] == pytest.approx(1.0)
    assert smoothed[1] == pytest.approx(expected_2)
    assert math.isnan(smoothed[2])  # NaN passes through and leaves the average alone
    assert smoothed[3] == pytest.approx(last3 / (1 - 0.5**3))
    np.testing.assert_array_equal(ema_smooth([1.0, 2.0], 0.0), [1.0, 2.0])


def test_smoothing_slider_drives_smoothing(qtbot, view: TrainingPlotsView) -> None:
    assert view.smoothing() == pytest.approx(0.6)
    slider = view.findChild(type(view._smoothing_slider), "smoothingSlider")
    assert slider is not None and slider.accessibleName()
    with qtbot.waitSignal(view.smoothingChanged) as blocker:
        slider.setValue(90)
    assert blocker.args[0] == pytest.approx(0.9)


# pyqtgraph warns (harmlessly) while computing bounds of an all-NaN epoch curve.
@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")
def test_nan_and_inf_losses_do_not_crash(qtbot, view: TrainingPlotsView) -> None:
    view.show()
    qtbot.waitExposed(view)
    losses = [1.0, float("nan"), 0.8, float("inf"), 0.6, -0.1, 0.0, 0.5]
    for i, loss in enumerate(losses, start=1):
        view.add_event(step(i, loss))
    view.add_event(epoch_metrics(1, float("nan"), True, val_loss=float("nan")))
    view.refresh()
    view.set_log_scale(True)  # log of <= 0 and NaN must not raise either
    assert view.log_scale()
    view.refresh()
    view.repaint()
    view.set_log_scale(False)
    assert view.step_count() == len(losses)
    assert view.best_epoch() == 1


def test_export_png(tmp_path, view: TrainingPlotsView) -> None:
    for i in range(1, 101):
        view.add_event(step(i, 1.0 / i))
    view.add_event(epoch_metrics(1, 0.5, True))
    path = view.export_png(tmp_path / "plots.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 1000


def test_export_csv_rows(tmp_path, view: TrainingPlotsView) -> None:
    for i in range(1, 4):
        view.add_event(step(i, 1.0 / i))
    view.add_event(epoch_metrics(1, 0.5, False))
    view.add_event(epoch_metrics(2, 0.7, True))
    path = view.export_csv(tmp_path / "metrics.csv")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0].keys()) == list(CSV_COLUMNS)
    assert [r["kind"] for r in rows] == ["step"] * 3 + ["epoch"] * 2
    assert [int(r["global_step"]) for r in rows[:3]] == [1, 2, 3]
    assert float(rows[1]["loss"]) == pytest.approx(0.5)
    assert rows[0]["val_accuracy"] == ""
    assert rows[3]["global_step"] == "" and rows[3]["loss"] == ""
    assert float(rows[4]["val_accuracy"]) == pytest.approx(0.7)
    assert [r["is_best"] for r in rows[3:]] == ["0", "1"]


def test_controls_are_named_for_accessibility(view: TrainingPlotsView) -> None:
    from PySide6.QtWidgets import QCheckBox, QSlider

    for widget in view.findChildren(QSlider) + view.findChildren(QCheckBox):
        assert widget.objectName()
        assert widget.accessibleName()


def test_follows_palette_changes(view: TrainingPlotsView) -> None:
    from PySide6.QtGui import QColor, QPalette

    palette = view.palette()
    palette.setColor(QPalette.ColorRole.Window, QColor(30, 30, 30))
    palette.setColor(QPalette.ColorRole.WindowText, QColor(230, 230, 230))
    view.setPalette(palette)
    assert view._theme.dark
    assert view._graphics.backgroundBrush().color() == QColor(30, 30, 30)


def test_the_epoch_axes_span_the_runs_epochs(qtbot, view: TrainingPlotsView) -> None:
    view.add_event(epoch_metrics(1, 0.5, True))  # the first of 5 epochs
    view.refresh()
    for plot in (view._acc_plot, view._eloss_plot):
        low, high = plot.getViewBox().viewRange()[0]
        assert 0.5 <= low < 1 and 5 < high <= 5.5, (low, high)  # 1 … 5, not −1 … 3


def test_the_heads_validations_while_caching_are_drawn_left_of_epoch_one(qtbot, view: TrainingPlotsView) -> None:
    view.add_event(CacheValidation(cached=64, total=256, train_loss=0.9, val_loss=1.1, val_accuracy=0.55, seconds=1.0))
    view.add_event(CacheValidation(cached=128, total=256, train_loss=0.7, val_loss=0.8, val_accuracy=0.71, seconds=2.0))
    view.add_event(epoch_metrics(1, 0.5, True))
    view.refresh()
    x, y = view._stream_acc_curve.getData()
    assert list(x) == [0.25, 0.5] and list(y) == [0.55, 0.71]  # fractions of the first epoch's images
    x, y = view._stream_eloss_curve.getData()
    assert list(y) == [1.1, 0.8]
    assert view.epoch_count() == 1  # they are not epochs
    for plot in (view._acc_plot, view._eloss_plot):
        low, high = plot.getViewBox().viewRange()[0]
        assert low < 0.25 and 5 < high <= 5.5, (low, high)
    view.clear()
    assert len(view._stream_acc_curve.getData()[0] if view._stream_acc_curve.getData()[0] is not None else []) == 0


# -- redraws: coalesced, at most four a second, only while visible -------------------------------


def run_started(epochs: int = 5, steps_per_epoch: int = 10) -> RunStarted:
    return RunStarted(("a", "b"), 100, 20, "cpu", False, epochs, steps_per_epoch, 1, None)


@pytest.fixture
def shown(qtbot, view: TrainingPlotsView) -> TrainingPlotsView:
    view.show()
    qtbot.waitExposed(view)
    return view


def curve_points(view: TrainingPlotsView) -> tuple[int, int]:
    """Points the raw-loss curve and the validation-accuracy curve hold (drawn, not buffered)."""
    raw, _ = view._raw_curve.getData()
    val, _ = view._val_acc_curve.getData()
    return (0 if raw is None else len(raw)), (0 if val is None else len(val))


def test_events_within_one_flush_interval_cause_one_redraw(qtbot, shown: TrainingPlotsView) -> None:
    redraws: list[tuple[int, int]] = []
    shown.curvesChanged.connect(lambda: redraws.append(curve_points(shown)))
    with qtbot.waitSignal(shown.curvesChanged, timeout=2000):
        for i in range(1, 31):
            shown.add_event(step(i, 1.0 / i))
        shown.add_event(epoch_metrics(1, 0.5, True))
    assert redraws == [(30, 1)]  # one redraw, with every point of the burst


def test_redraws_come_at_most_four_times_a_second(qtbot, shown: TrainingPlotsView) -> None:
    times: list[float] = []
    shown.curvesChanged.connect(lambda: times.append(time.monotonic()))
    for i in range(1, 4):
        with qtbot.waitSignal(shown.curvesChanged, timeout=2000):
            shown.add_event(step(i, 1.0))
    assert len(times) == 3
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.24


def test_a_hidden_view_buffers_and_draws_everything_when_shown(qtbot) -> None:
    tabs = QTabWidget()
    qtbot.addWidget(tabs)
    tabs.addTab(QWidget(), "Data")
    view = TrainingPlotsView()
    tabs.addTab(view, "Train")
    tabs.show()
    qtbot.waitExposed(tabs)
    redraws: list[tuple[int, int]] = []
    view.curvesChanged.connect(lambda: redraws.append(curve_points(view)))
    for i in range(1, 21):
        view.add_event(step(i, 1.0 / i))
    view.add_event(epoch_metrics(1, 0.5, True))
    QApplication.processEvents()  # nothing may be scheduled to draw
    assert not view.isVisible() and view.step_count() == 20
    assert redraws == [] and curve_points(view) == (0, 0)
    tabs.setCurrentIndex(1)  # shown: drawn before its first paint
    assert redraws == [(20, 1)]


def test_the_final_points_appear_after_the_run_finishes(qtbot, shown: TrainingPlotsView) -> None:
    shown.add_event(run_started(epochs=2, steps_per_epoch=10))
    for epoch in (1, 2):
        for s in range(1, 11):
            shown.add_event(step((epoch - 1) * 10 + s, 1.0 / s, epoch=epoch))
        shown.add_event(epoch_metrics(epoch, 0.5 + 0.1 * epoch, True))
    shown.add_event(RunFinished("completed", "trained 2 epochs", 2, 0.7, None))
    qtbot.waitUntil(lambda: curve_points(shown) == (20, 2), timeout=2000)
    assert shown.best_epoch() == 2


def test_the_step_axis_spans_the_planned_run_and_grows_past_it(shown: TrainingPlotsView) -> None:
    shown.add_event(run_started(epochs=5, steps_per_epoch=10))
    shown.add_event(step(1, 1.0))
    shown.refresh()
    assert shown._loss_plot.getViewBox().viewRange()[0] == pytest.approx([0, 50])
    for i in range(2, 61):  # a run that outlasts its plan (the batch size was lowered)
        shown.add_event(step(i, 1.0))
    shown.refresh()
    assert shown._loss_plot.getViewBox().viewRange()[0] == pytest.approx([0, 100])


def test_the_loss_axis_moves_a_few_times_for_a_falling_loss(shown: TrainingPlotsView) -> None:
    shown.add_event(run_started(epochs=10, steps_per_epoch=50))
    ranges = []
    for i in range(1, 501):
        shown.add_event(step(i, 2.3 * math.exp(-i / 150) + 0.05 * math.sin(i)))
        if i % 5 == 0:  # one redraw per five steps, as the timer would coalesce them
            shown.refresh()
            ranges.append(tuple(shown._loss_plot.getViewBox().viewRange()[1]))
            low, high = ranges[-1]
            assert low <= shown.raw_losses().min() and shown.raw_losses().max() <= high  # every point shows
    assert len(set(ranges)) <= 10  # autoranged, it moves on 88 of these 100 redraws


def test_the_users_zoom_is_kept_until_the_next_run(shown: TrainingPlotsView) -> None:
    shown.add_event(run_started(epochs=5, steps_per_epoch=10))
    for i in range(1, 11):
        shown.add_event(step(i, 1.0 / i))
    shown.refresh()
    box = shown._loss_plot.getViewBox()
    box.setRange(xRange=(2, 4), yRange=(0.2, 0.4), padding=0)
    box.sigRangeChangedManually.emit(box.state["mouseEnabled"])  # as a wheel or drag does
    for i in range(11, 41):
        shown.add_event(step(i, 5.0))
    shown.refresh()
    assert box.viewRange() == [pytest.approx([2, 4]), pytest.approx([0.2, 0.4])]
    shown.clear()
    shown.add_event(run_started(epochs=5, steps_per_epoch=10))
    shown.add_event(step(1, 1.0))
    shown.refresh()
    assert box.viewRange()[0] == pytest.approx([0, 50])


def test_the_accuracy_axis_reaches_100_percent_and_stays_while_accuracy_rises(shown: TrainingPlotsView) -> None:
    shown.add_event(run_started(epochs=5, steps_per_epoch=10))
    ranges = []
    for epoch, accuracy in enumerate((0.62, 0.71, 0.80, 0.88, 0.97), start=1):
        shown.add_event(epoch_metrics(epoch, accuracy, True))
        shown.refresh()
        ranges.append(tuple(shown._acc_plot.getViewBox().viewRange()[1]))
    low, high = ranges[0]
    assert low < 0.6 < 0.62 and 1.0 < high < 1.05  # from the tenth below the first value to 100 %
    assert len(set(ranges)) == 1  # autoranged, it moved on every epoch (and re-rendered its grid)
    shown.add_event(epoch_metrics(6, 0.35, False))  # a collapse below the floor moves it
    shown.refresh()
    low, high = shown._acc_plot.getViewBox().viewRange()[1]
    assert low < 0.3 and 1.0 < high


def test_the_epoch_loss_axis_moves_a_few_times_and_shows_every_point(shown: TrainingPlotsView) -> None:
    shown.add_event(run_started(epochs=20, steps_per_epoch=10))
    ranges = []
    for epoch in range(1, 21):
        shown.add_event(epoch_metrics(epoch, 0.5, True, val_loss=2.0 * math.exp(-epoch / 6)))
        shown.refresh()
        ranges.append(tuple(shown._eloss_plot.getViewBox().viewRange()[1]))
        low, high = ranges[-1]
        assert low <= 2.0 * math.exp(-epoch / 6) and 0.4 <= high  # every val and train point shows
    assert len(set(ranges)) <= 6


def test_a_value_axis_widens_for_its_labels_and_never_narrows(shown: TrainingPlotsView) -> None:
    """An axis that follows its labels' width resizes its plot, which re-renders every axis."""
    shown.add_event(run_started(epochs=10, steps_per_epoch=50))
    axis = shown._loss_plot.getAxis("left")
    widths = []
    for i, loss in enumerate([0.0101, 0.0112, 0.0124, 0.0108] * 5 + [3.0, 1.0, 2.0, 0.5] * 5, start=1):
        shown.add_event(step(i, loss))  # labels "0.0105" …, then "0.5" … "3"
        if i % 4 == 0:
            shown.refresh()
            shown._graphics.grab()  # painted: the axis measures its labels
            widths.append(axis.minimumWidth())  # what the layout gives it next
    assert widths[-1] > 0 and widths == sorted(widths)  # it never narrows


def test_the_axes_span_the_planned_run_as_soon_as_it_starts(qtbot, shown: TrainingPlotsView) -> None:
    """While the feature cache fills there are no steps yet; the axes already show the run."""
    with qtbot.waitSignal(shown.curvesChanged, timeout=2000):
        shown.add_event(run_started(epochs=5, steps_per_epoch=10))
    assert shown._loss_plot.getViewBox().viewRange()[0] == pytest.approx([0, 50])
    low, high = shown._acc_plot.getViewBox().viewRange()[0]
    assert low < 1 and 5 < high <= 5.5
