"""Live training plots: loss per step, accuracy and loss per epoch.

Follows the TensorBoard conventions people already read fluently: a faint raw loss line under
an EMA-smoothed one (debiased like TensorBoard, so the start is not dragged towards zero), a
smoothing slider, a log-y toggle, and a marker on the best epoch.

Performance: each curve is created once; events append into numpy buffers that double when
full, and a short coalescing timer hands pyqtgraph views of the filled part. A flood of events
therefore costs one ``setData`` per redraw, not one per event, and only the plots whose data
changed are touched: a step redraws the loss plot, the two per-epoch plots (and the title that
names the best epoch) wait for the next epoch. Redraws come at most twice a second, and
only while the view is visible (a hidden Train page buffers and draws once when shown): a
pyqtgraph redraw is Python work on the GUI thread that holds the GIL, and the training thread
needs the GIL between its kernels, so every redraw slows training a little (measured in
``bench/bench_gui_throughput.py``). What a redraw paints is kept small too: the axes, which
draw the grid over the data area (at the labelled ticks only), are cached as pixmaps that a
curve update blits instead of re-rendering every tick label, and no range moves on most
redraws, so the cache holds. The step axis spans the whole planned run (it grows only when a
run outlasts its plan), the epoch axes the planned epochs; a loss axis is refit only when a
point leaves it or the points fill less than half of it, leaving room below for the loss to
fall into (an autoranged axis re-ticks on every new low, i.e. on most steps of a falling
loss), and the accuracy axis reaches up to 100 %, so a rising accuracy never moves it. Once
the user pans or zooms the loss plot, its ranges are theirs until the next run. The step
curves downsample (peak mode) and clip to the visible range, so hours of steps still pan
smoothly.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from headswap_gui.gui.qt_env import prepare_qt_environment

prepare_qt_environment()

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal, Slot  # noqa: E402
from PySide6.QtGui import QColor, QPalette  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QCheckBox,
    QGraphicsItem,
    QGraphicsLinearLayout,
    QGraphicsWidget,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from headswap_gui.core.events import CacheValidation, EpochMetrics, RunStarted, StepMetrics  # noqa: E402

__all__ = ["TrainingPlotsView", "ema_smooth", "CSV_COLUMNS"]

CSV_COLUMNS: tuple[str, ...] = (
    "kind",
    "epoch",
    "step",
    "global_step",
    "loss",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "is_best",
)

_DEFAULT_SMOOTHING = 0.6
_SLIDER_STEPS = 100  # slider value v means smoothing v / 100, 0 .. 0.99
_REFRESH_MS = 40  # a redraw waits this long for more events to coalesce
_MIN_REDRAW_INTERVAL_MS = 500  # at most twice a second: window/CLI throughput 0.957 at 4, 0.960-0.982 at 2
_MIN_STEP_SPAN = 16  # the step axis of a run of unknown length starts at 0 … 16 and doubles
_LOSS_FILL = 0.5  # the loss points fill at least this part of the loss axis, or it is refit
_LOSS_ROOM_BELOW = 0.5  # a refit leaves this part of the points' spread free below them
_LOSS_MARGIN = 0.1  # and this part above
_ACCURACY_PAD = 0.06  # the accuracy axis reaches this part of its span past its floor and 100 %


def ema_smooth(values: Sequence[float] | np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average.

    Non-finite values pass through unchanged and do not disturb the average, so one NaN step
    shows as a gap instead of poisoning the rest of the smoothed line.
    """
    return _EmaState(weight).push_all(values)


class _EmaState:
    """Incremental form of :func:`ema_smooth`, one value at a time."""

    def __init__(self, weight: float) -> None:
        self.weight = min(max(float(weight), 0.0), 0.999)
        self._last = 0.0
        self._count = 0

    def push(self, value: float) -> float:
        if not math.isfinite(value):
            return value
        w = self.weight
        self._last = self._last * w + (1.0 - w) * value
        self._count += 1
        debias = 1.0 - w**self._count if w > 0.0 else 1.0
        return self._last / debias

    def push_all(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        return np.fromiter((self.push(float(v)) for v in values), dtype=float, count=len(values))


class _Columns:
    """Named float columns appended row by row; capacity doubles when full.

    Stored column-major so each column's filled part is a contiguous view for ``setData``.
    """

    def __init__(self, names: Sequence[str], capacity: int = 256) -> None:
        self._index = {name: i for i, name in enumerate(names)}
        self._data = np.full((len(names), capacity), np.nan)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, values: Sequence[float]) -> None:
        if self._size == self._data.shape[1]:
            grown = np.full((self._data.shape[0], self._data.shape[1] * 2), np.nan)
            grown[:, : self._size] = self._data
            self._data = grown
        self._data[:, self._size] = values
        self._size += 1

    def column(self, name: str) -> np.ndarray:
        """A view of the filled part; valid until the next append that grows the buffer."""
        return self._data[self._index[name], : self._size]

    def set_column(self, name: str, values: np.ndarray) -> None:
        self._data[self._index[name], : self._size] = values

    def rows(self) -> Iterable[np.ndarray]:
        return (self._data[:, i] for i in range(self._size))

    def clear(self) -> None:
        self._data = np.full((self._data.shape[0], 256), np.nan)
        self._size = 0


def _loss_view_range(
    values: np.ndarray, shown: tuple[float, float] | None, *, may_be_negative: bool = False
) -> tuple[float, float] | None:
    """A new range for a loss axis, or None to keep ``shown``: it is kept while every finite
    value lies inside it and the values span at least half of it; else it is refit around them
    with room below (down to zero at most, unless the axis is log10 and may go negative), so a
    falling loss moves the axis a few times per run instead of on every new low. Every move
    re-renders the axis and the grid it draws."""
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    low, high = float(values.min()), float(values.max())
    if shown is not None and shown[0] <= low and high <= shown[1] and high - low >= _LOSS_FILL * (shown[1] - shown[0]):
        return None
    spread = high - low or max(abs(high), 1.0)
    bottom = low - _LOSS_ROOM_BELOW * spread
    if not may_be_negative and low >= 0.0:
        bottom = max(bottom, 0.0)
    return bottom, high + _LOSS_MARGIN * spread


def _accuracy_view_range(values: np.ndarray, shown: tuple[float, float] | None) -> tuple[float, float] | None:
    """A new range for an accuracy axis, or None to keep ``shown``: it reaches up to 100 %
    always (a rising accuracy never moves it) and down to the tenth at or below the lowest
    value, so it moves only when a value falls below its floor."""
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    low = float(values.min())
    if shown is not None and shown[0] <= low:
        return None
    floor = max(math.floor(low * 10.0 + 1e-9) / 10.0, 0.0)
    pad = _ACCURACY_PAD * (1.0 - floor)
    return floor - pad, 1.0 + pad


class _IntegerAxis(pg.AxisItem):
    """An axis for epochs: never ticks at 1.5."""

    def tickSpacing(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, float]]:  # noqa: N802, N803 - Qt API
        levels = super().tickSpacing(minVal, maxVal, size)
        whole = [(spacing, offset) for spacing, offset in levels if spacing >= 1.0]
        return whole or [(1.0, 0.0)]


_TITLE_CELL = (0, 1)  # PlotItem's grid: row 0 title, 1 top axis, 2 data, 3 bottom axis; column 1 data
_BELOW_CELL = (4, 1)  # a row of our own under the bottom axis
_LOWER_ROW_CHROME = 12 + 2 * 4  # the lower row: the spacing between its plots, the layout's margins
_AXIS_MIN = 56  # a y axis with its label, before the first layout has measured it
_LEGEND_MARGIN = 12  # what a legend's cell needs beside the legend
_PLOT_ROW_MIN = 120 + 86  # a row of plots: a data area of 120 px, its title, axis and legend
_LOWER_LEGEND_ITEMS = 3  # train, val, caching: one line when the plot is wide enough


def _legend_outside(plot: pg.PlotItem, columns: int, *, in_title_row: bool) -> pg.LegendItem:
    """A one-line legend outside the data area, so it can never cover a curve wherever the
    data falls: in the title's row on the right (a wide plot, where both fit), or under the
    x axis (a narrow one). The never-shown top axis leaves the layout either way, so the data
    area keeps at least 120 px on a 1024×768 screen. Curves created afterwards with
    ``plot.plot(name=...)`` add themselves, as with ``PlotItem.addLegend``.
    """
    top_axis = plot.getAxis("top")
    top_axis.hide()
    plot.layout.removeItem(top_axis)
    plot.layout.setRowFixedHeight(1, 0)
    legend = pg.LegendItem(offset=None, colCount=columns, horSpacing=6, verSpacing=0, labelTextSize="9pt")
    legend.layout.setContentsMargins(4, 0, 0, 0)
    legend.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)  # its own size, not the row's
    if in_title_row:
        title = plot.titleLabel
        title.opts["justify"] = "left"
        plot.layout.removeItem(title)
        header = QGraphicsWidget(plot)
        row = QGraphicsLinearLayout(Qt.Orientation.Horizontal, header)
        row.setContentsMargins(0, 0, 0, 0)
        row.addItem(title)
        row.addStretch(1)
        row.addItem(legend)
        row.setAlignment(legend, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        plot.layout.addItem(header, *_TITLE_CELL)
    else:
        plot.layout.addItem(legend, *_BELOW_CELL, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    plot.legend = legend
    return legend


class _Theme:
    """Colours derived from the widget palette, so plots follow light and dark modes."""

    def __init__(self, palette: QPalette) -> None:
        self.background = palette.color(QPalette.ColorRole.Window)
        self.foreground = palette.color(QPalette.ColorRole.WindowText)
        self.dark = self.background.lightness() < 128
        if self.dark:
            self.loss = QColor("#64b5f6")
            self.train = QColor("#ffb74d")
            self.val = QColor("#81c784")
            self.best = QColor("#ef5350")
        else:
            self.loss = QColor("#1565c0")
            self.train = QColor("#e65100")
            self.val = QColor("#2e7d32")
            self.best = QColor("#c62828")
        self.raw_loss = QColor(self.loss)
        self.raw_loss.setAlpha(80 if self.dark else 70)
        self.legend_brush = QColor(self.background)
        self.legend_brush.setAlpha(200)


class TrainingPlotsView(QWidget):
    """Three live plots of a training run plus smoothing and log-scale controls.

    Feed it core events with :meth:`add_event` (connect it to ``GeneratorRunner.eventEmitted``):
    StepMetrics and EpochMetrics are drawn, RunStarted says how long the run will be (the axes
    span it), anything else is ignored. ``curvesChanged`` is emitted after each redraw that
    handed the curves new data.
    """

    smoothingChanged = Signal(float)
    logScaleChanged = Signal(bool)
    curvesChanged = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("trainingPlotsView")
        self._steps = _Columns(("epoch", "step", "global_step", "loss", "lr", "smoothed"))
        self._epochs = _Columns(
            ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "is_best")
        )
        # While the feature cache fills: the head's validation at each chunk end, at x = the
        # fraction of the first epoch's images cached (0 … 1, left of epoch 1).
        self._streamed = _Columns(("fraction", "val_loss", "val_accuracy"))
        self._smoothing = _DEFAULT_SMOOTHING
        self._ema = _EmaState(self._smoothing)
        self._best_epoch: int | None = None
        self._planned_epochs = 0  # the run's epoch count: the epoch axes span 1 … this
        self._steps_per_epoch = 0  # the last known; with _planned_epochs, the step axis's span
        self._step_span = 0.0  # the step axis's upper end as last set (0: not set yet)
        self._loss_range: tuple[float, float] | None = None  # the loss axis as last fit (view units)
        self._epoch_x_range: tuple[float, float] | None = None  # the epoch axes as last set
        self._accuracy_range: tuple[float, float] | None = None  # the accuracy axis as last fit
        self._epoch_loss_range: tuple[float, float] | None = None  # the per-epoch loss axis as last fit
        self._ranges_by_user = False  # the user panned or zoomed the loss plot: leave its ranges
        self._best_point: tuple[float, float] | None = None
        self._applying_theme = False
        self._steps_dirty = False  # step data not yet handed to the curves
        self._epochs_dirty = False  # epoch data not yet handed to the curves
        self._acc_title: str | None = None  # the accuracy title as last set (skip same-text sets)
        self._last_redraw = -math.inf  # time.monotonic() of the last coalesced redraw

        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setTimerType(Qt.TimerType.PreciseTimer)  # a coarse one fires up to 5 % early
        self._refresh_timer.setInterval(_REFRESH_MS)
        self._refresh_timer.timeout.connect(self._on_refresh_timer_timeout)

        self._build_controls()
        self._build_plots()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(self._controls_layout)
        layout.addWidget(self._graphics, 1)
        self._apply_theme()

    # -- construction -----------------------------------------------------------------------

    def _build_controls(self) -> None:
        self._smoothing_label = QLabel(self.tr("Smoothing"), self)
        self._smoothing_slider = QSlider(Qt.Orientation.Horizontal, self)
        self._smoothing_slider.setObjectName("smoothingSlider")
        self._smoothing_slider.setAccessibleName(self.tr("Loss smoothing"))
        self._smoothing_slider.setToolTip(
            self.tr("Exponential moving average weight of the smoothed loss line (0 = raw)")
        )
        self._smoothing_slider.setRange(0, _SLIDER_STEPS - 1)
        self._smoothing_slider.setValue(round(_DEFAULT_SMOOTHING * _SLIDER_STEPS))
        self._smoothing_slider.setMinimumWidth(120)
        self._smoothing_slider.setMaximumWidth(240)
        self._smoothing_slider.valueChanged.connect(self._on_smoothing_slider_valueChanged)
        self._smoothing_label.setBuddy(self._smoothing_slider)

        self._smoothing_value = QLabel(f"{_DEFAULT_SMOOTHING:.2f}", self)
        digits_width = self._smoothing_value.fontMetrics().horizontalAdvance("0.00")
        self._smoothing_value.setMinimumWidth(digits_width + 4)

        self._log_checkbox = QCheckBox(self.tr("Log scale loss"), self)
        self._log_checkbox.setObjectName("logScaleCheckBox")
        self._log_checkbox.setAccessibleName(self.tr("Logarithmic loss axis"))
        self._log_checkbox.setToolTip(self.tr("Show the step loss on a logarithmic axis"))
        self._log_checkbox.toggled.connect(self._on_log_checkbox_toggled)

        row = QHBoxLayout()
        row.setContentsMargins(6, 4, 6, 0)
        row.setSpacing(8)
        row.addWidget(self._smoothing_label)
        row.addWidget(self._smoothing_slider)
        row.addWidget(self._smoothing_value)
        row.addSpacing(16)
        row.addWidget(self._log_checkbox)
        row.addStretch(1)
        self._controls_layout = row

    def _build_plots(self) -> None:
        self._graphics = pg.GraphicsLayoutWidget(self)
        self._graphics.setObjectName("trainingPlotsGraphics")
        self._graphics.setAccessibleName(self.tr("Training plots"))
        # Two rows of plots, each data area at least 120 px high with its title, axis and a
        # one-line legend (a lower legend on two lines, see _fit_legends, takes a line of it).
        self._graphics.setMinimumSize(360, 2 * _PLOT_ROW_MIN)
        self._graphics.ci.setContentsMargins(4, 4, 4, 4)
        self._graphics.ci.layout.setHorizontalSpacing(12)
        self._graphics.ci.layout.setVerticalSpacing(8)

        loss = self._graphics.addPlot(row=0, col=0, colspan=2)
        acc = self._graphics.addPlot(row=1, col=0, axisItems={"bottom": _IntegerAxis("bottom")})
        eloss = self._graphics.addPlot(row=1, col=1, axisItems={"bottom": _IntegerAxis("bottom")})
        self._graphics.ci.layout.setRowStretchFactor(0, 1)
        self._graphics.ci.layout.setRowStretchFactor(1, 1)
        self._loss_plot, self._acc_plot, self._eloss_plot = loss, acc, eloss

        for plot in (loss, acc, eloss):
            plot.showGrid(x=True, y=True, alpha=0.2)
            plot.setMenuEnabled(True)
            plot.getViewBox().setDefaultPadding(0.03)
        loss.setDownsampling(auto=True, mode="peak")
        loss.setClipToView(True)
        loss.getViewBox().sigRangeChangedManually.connect(self._on_loss_view_sigRangeChangedManually)

        # Legends sit above the data area, not on it: curves reach every corner of these plots
        # (accuracy climbs into the top right, loss falls into the bottom right).
        self._loss_legend = _legend_outside(loss, columns=2, in_title_row=True)
        self._acc_legend = _legend_outside(acc, columns=_LOWER_LEGEND_ITEMS, in_title_row=False)
        self._eloss_legend = _legend_outside(eloss, columns=_LOWER_LEGEND_ITEMS, in_title_row=False)
        self._graphics.installEventFilter(self)  # its width decides the lower legends' lines

        self._raw_curve = loss.plot(name="raw")
        self._smooth_curve = loss.plot(name="smoothed")
        self._train_acc_curve = acc.plot(name="train", symbol="o", symbolSize=5)
        self._val_acc_curve = acc.plot(name="val", symbol="o", symbolSize=5)
        # The best epoch's star is named by the plot's title ("best: epoch 5"), not the legend,
        # which then fits one line of a half-width plot on a 1024-px screen.
        self._best_point_item = acc.plot(pen=None, symbol="star", symbolSize=14)
        self._train_eloss_curve = eloss.plot(name="train", symbol="o", symbolSize=5)
        self._val_eloss_curve = eloss.plot(name="val", symbol="o", symbolSize=5)
        self._stream_acc_curve = acc.plot(name="caching", symbol="o", symbolSize=4)
        self._stream_eloss_curve = eloss.plot(name="caching", symbol="o", symbolSize=4)
        for curve in (self._raw_curve, self._smooth_curve):
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
        # The left and bottom axes draw the grid across the data area, so every curve update
        # repaints them: from a cached pixmap, re-rendered only when the axis itself changes.
        # Their grid has lines at the labelled ticks only: pyqtgraph's third tick level adds
        # faint lines between every two labels that made each re-render 2-3x slower (the
        # run's first paint of the Train page, and every range move while training).
        for plot in (loss, acc, eloss):
            for side in ("left", "bottom"):
                axis = plot.getAxis(side)
                axis.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
                axis.setStyle(maxTickLevel=1)
            # A value axis widens for wider tick labels and never narrows again: one that
            # followed its labels ("2.5" → "1.25" → "0.5") resized its plot, and so re-rendered
            # every axis of the row, a few times per run.
            plot.getAxis("left").setStyle(autoReduceTextSpace=False)
        # Another run's validation curves, for comparison (Runs page → Compare); hidden until set.
        self._compare_acc_curve = pg.PlotDataItem(symbol="t", symbolSize=5)
        self._compare_eloss_curve = pg.PlotDataItem(symbol="t", symbolSize=5)
        for plot, curve in ((acc, self._compare_acc_curve), (eloss, self._compare_eloss_curve)):
            plot.addItem(curve)
        self._comparison: str | None = None

        self._best_lines = []
        for plot in (acc, eloss):
            line = pg.InfiniteLine(angle=90, movable=False)
            line.setVisible(False)
            line.setZValue(-5)
            plot.addItem(line, ignoreBounds=True)
            self._best_lines.append(line)

    def _apply_theme(self) -> None:
        """(Re)colour everything from the current palette."""
        self._applying_theme = True
        try:
            theme = _Theme(self.palette())
            self._theme = theme
            self._graphics.setBackground(theme.background)
            fg = theme.foreground
            titles = {
                # The x axes carry no label: the title names them, and the row it would take
                # is the data's.
                self._loss_plot: ("Training loss per global step", "loss"),
                self._acc_plot: ("Accuracy per epoch", "accuracy"),
                self._eloss_plot: ("Loss per epoch", "loss"),
            }
            for plot, (title, ylabel) in titles.items():
                plot.setTitle(title, color=fg, size="10pt")
                for side in ("left", "bottom"):
                    axis = plot.getAxis(side)
                    axis.enableAutoSIPrefix(False)  # "accuracy (x0.001)" reads badly
                    axis.setPen(pg.mkPen(fg))
                    axis.setTextPen(pg.mkPen(fg))
                plot.setLabel("left", ylabel, color=fg.name())
            self._update_accuracy_title(force=True)
            self._update_loss_label()
            for legend in (self._loss_legend, self._acc_legend, self._eloss_legend):
                legend.setBrush(pg.mkBrush(theme.legend_brush))
                legend.setPen(pg.mkPen(None))
                legend.setLabelTextColor(fg)
                for _sample, label in legend.items:  # setLabelTextColor does not re-render
                    label.setText(label.text, color=fg)

            for curve in (self._compare_acc_curve, self._compare_eloss_curve):
                curve.setPen(pg.mkPen(theme.raw_loss, width=2, style=Qt.PenStyle.DashLine))
                curve.setSymbolPen(pg.mkPen(theme.raw_loss))
                curve.setSymbolBrush(pg.mkBrush(theme.raw_loss))
            self._raw_curve.setPen(pg.mkPen(theme.raw_loss, width=1))
            self._smooth_curve.setPen(pg.mkPen(theme.loss, width=2))
            for curve, colour in (
                (self._train_acc_curve, theme.train),
                (self._train_eloss_curve, theme.train),
                (self._val_acc_curve, theme.val),
                (self._val_eloss_curve, theme.val),
            ):
                curve.setPen(pg.mkPen(colour, width=2))
                curve.setSymbolPen(pg.mkPen(colour))
                curve.setSymbolBrush(pg.mkBrush(colour))
            for curve in (self._train_acc_curve, self._train_eloss_curve):
                curve.setPen(pg.mkPen(theme.train, width=2, style=Qt.PenStyle.DashLine))
            for curve in (self._stream_acc_curve, self._stream_eloss_curve):
                curve.setPen(pg.mkPen(theme.val, width=1, style=Qt.PenStyle.DotLine))
                curve.setSymbolPen(pg.mkPen(theme.val))
                curve.setSymbolBrush(pg.mkBrush(theme.background))  # hollow: not an epoch
            self._best_point_item.setSymbolPen(pg.mkPen(theme.best))
            self._best_point_item.setSymbolBrush(pg.mkBrush(theme.best))
            for line in self._best_lines:
                line.setPen(pg.mkPen(theme.best, width=1, style=Qt.PenStyle.DashLine))
        finally:
            self._applying_theme = False

    # -- public API -------------------------------------------------------------------------

    @Slot(object)
    def add_event(self, event: object) -> None:
        """Record a StepMetrics, CacheValidation or EpochMetrics, or a RunStarted's planned
        length; anything else is ignored. Drawn at the next coalesced redraw (when the view is
        visible)."""
        if isinstance(event, RunStarted):  # the step and epoch axes span the planned run at once
            self._planned_epochs = max(self._planned_epochs, int(event.epochs))
            self._steps_per_epoch = int(event.steps_per_epoch)
            self._steps_dirty = self._epochs_dirty = True
        elif isinstance(event, StepMetrics):
            self._steps_per_epoch = int(event.steps_per_epoch)
            loss = float(event.loss)
            self._steps.append(
                (
                    event.epoch,
                    event.step,
                    event.global_step,
                    loss,
                    float(event.lr),
                    self._ema.push(loss),
                )
            )
        elif isinstance(event, CacheValidation):
            self._streamed.append((event.cached / max(event.total, 1), float(event.val_loss), float(event.val_accuracy)))
            self._epochs_dirty = True
        elif isinstance(event, EpochMetrics):
            self._epochs.append(
                (
                    event.epoch,
                    float(event.train_loss),
                    float(event.train_accuracy),
                    float(event.val_loss),
                    float(event.val_accuracy),
                    float(event.lr),
                    1.0 if event.is_best else 0.0,
                )
            )
            self._planned_epochs = max(self._planned_epochs, int(event.epochs))
            if event.is_best:
                self._best_epoch = int(event.epoch)
                self._best_point = (float(event.epoch), float(event.val_accuracy))
            self._epochs_dirty = True
        else:
            return
        if isinstance(event, StepMetrics):
            self._steps_dirty = True
        if self.isVisible() and not self._refresh_timer.isActive():  # hidden: showEvent draws
            since = (time.monotonic() - self._last_redraw) * 1000.0
            self._refresh_timer.start(int(max(_REFRESH_MS, _MIN_REDRAW_INTERVAL_MS - since)))

    def add_events(self, events: Iterable[object]) -> None:
        """Record many events (e.g. replaying a run log) with a single redraw."""
        for event in events:
            self.add_event(event)

    @Slot()
    def clear(self) -> None:
        """Forget all data (e.g. before a new run); smoothing and log settings stay."""
        self._steps.clear()
        self._epochs.clear()
        self._streamed.clear()
        self._ema = _EmaState(self._smoothing)
        self._best_epoch = None
        self._best_point = None
        self._planned_epochs = 0
        self._steps_per_epoch = 0
        self._step_span = 0.0
        self._loss_range = None
        self._epoch_x_range = self._accuracy_range = self._epoch_loss_range = None
        self._ranges_by_user = False
        self.refresh()

    def refresh(self) -> None:
        """Push all buffered data to the curves now instead of at the next coalesced redraw."""
        self._refresh_timer.stop()
        self._refresh_steps()
        self._refresh_epochs()
        self.curvesChanged.emit()

    def _refresh_changed(self) -> None:
        """The coalesced redraw: only the plots whose data changed since the last one.

        Every ``setData`` makes pyqtgraph re-range its view and re-tick its axes, and every
        title change re-lays out the whole grid, so repainting the per-epoch plots on each step
        would cost the GUI thread (and, through the GIL, the training thread) for nothing.
        """
        if not (self._steps_dirty or self._epochs_dirty):
            return
        self._last_redraw = time.monotonic()
        if self._steps_dirty:
            self._refresh_steps()
        if self._epochs_dirty:
            self._refresh_epochs()
        self.curvesChanged.emit()

    def _refresh_steps(self) -> None:
        self._steps_dirty = False
        steps = self._steps
        x = steps.column("global_step")
        self._raw_curve.setData(x, steps.column("loss"), connect="finite")
        self._smooth_curve.setData(x, steps.column("smoothed"), connect="finite")
        if not self._ranges_by_user:
            self._fit_step_axis()
            self._fit_loss_axis()

    def _fit_step_axis(self) -> None:
        """The step axis spans 0 … the planned run's steps, so a new step moves no tick (an
        autoranged axis re-ticks, and repaints its grid, on every point); a run that outlasts
        its plan, or one of unknown length, doubles the span when a step passes its end."""
        steps = self._steps.column("global_step")
        last = float(np.nanmax(steps)) if len(steps) else 0.0
        span = float(max(self._planned_epochs * self._steps_per_epoch, self._step_span, _MIN_STEP_SPAN))
        while span < last:
            span *= 2
        if span != self._step_span:
            self._step_span = span
            self._loss_plot.setXRange(0, span, padding=0)

    def _fit_loss_axis(self) -> None:
        """The loss axis moves a few times per run, not on every new low: see
        :func:`_loss_view_range`. In view units: log10 of the positive losses on a log axis."""
        y = self._steps.column("loss")
        if self.log_scale():
            y = np.log10(y[y > 0])
        refit = _loss_view_range(y, self._loss_range, may_be_negative=self.log_scale())
        if refit is not None:
            self._loss_range = refit
            self._loss_plot.setYRange(*refit, padding=0)

    def _refresh_epochs(self) -> None:
        self._epochs_dirty = False
        epochs = self._epochs
        ex = epochs.column("epoch")
        self._train_acc_curve.setData(ex, epochs.column("train_accuracy"), connect="finite")
        self._val_acc_curve.setData(ex, epochs.column("val_accuracy"), connect="finite")
        self._train_eloss_curve.setData(ex, epochs.column("train_loss"), connect="finite")
        self._val_eloss_curve.setData(ex, epochs.column("val_loss"), connect="finite")
        sx = self._streamed.column("fraction")
        self._stream_acc_curve.setData(sx, self._streamed.column("val_accuracy"), connect="finite")
        self._stream_eloss_curve.setData(sx, self._streamed.column("val_loss"), connect="finite")
        self._fit_epoch_axes()
        self._update_accuracy_title()
        if self._best_point is None:
            self._best_point_item.setData([], [])
            for line in self._best_lines:
                line.setVisible(False)
        else:
            bx, by = self._best_point
            if math.isfinite(by):
                self._best_point_item.setData([bx], [by])
            else:
                self._best_point_item.setData([], [])
            for line in self._best_lines:
                line.setValue(bx)
                line.setVisible(True)

    def _fit_epoch_axes(self) -> None:
        """The epoch axes span 1 … the run's epochs (and the compared run's), not −1 … 3
        around the first point as autorange would; from 0 when the head's validations while
        the cache filled (fractions of the first epoch) are drawn. Their value axes move only
        when a point leaves them (:func:`_accuracy_view_range`, :func:`_loss_view_range`), so
        an epoch re-renders at most the axes it has to."""
        drawn = [self._epochs.column("epoch"), self._compare_acc_curve.xData]
        last = max((float(np.nanmax(x)) for x in drawn if x is not None and len(x)), default=0.0)
        span = max(float(self._planned_epochs), last, 1.0)
        x_range = (-0.05 if len(self._streamed) else 0.75, span + 0.25)
        if x_range != self._epoch_x_range:
            self._epoch_x_range = x_range
            for plot in (self._acc_plot, self._eloss_plot):
                plot.setXRange(*x_range, padding=0)
        refit = _accuracy_view_range(self._drawn_values("accuracy", self._compare_acc_curve), self._accuracy_range)
        if refit is not None:
            self._accuracy_range = refit
            self._acc_plot.setYRange(*refit, padding=0)
        refit = _loss_view_range(self._drawn_values("loss", self._compare_eloss_curve), self._epoch_loss_range)
        if refit is not None:
            self._epoch_loss_range = refit
            self._eloss_plot.setYRange(*refit, padding=0)

    def _drawn_values(self, measure: str, compared: pg.PlotDataItem) -> np.ndarray:
        """Every value of ``measure`` ("accuracy" or "loss") an epoch plot draws, NaN gaps
        included: the run's train and val values, the head's validations while caching, the
        compared run's."""
        parts = [self._epochs.column(f"train_{measure}"), self._epochs.column(f"val_{measure}"),
                 self._streamed.column(f"val_{measure}")]
        if compared.yData is not None:
            parts.append(np.asarray(compared.yData, dtype=float))
        return np.concatenate(parts)

    def _update_accuracy_title(self, *, force: bool = False) -> None:
        title = self.tr("Accuracy per epoch")
        if self._best_epoch is not None:
            title += self.tr(" — best: epoch %1").replace("%1", str(self._best_epoch))
        if force or title != self._acc_title:  # a new title re-lays out every plot of the grid
            self._acc_title = title
            self._acc_plot.setTitle(title, color=self._theme.foreground, size="10pt")

    def _update_loss_label(self) -> None:
        label = self.tr("loss (log scale)") if self.log_scale() else self.tr("loss")
        self._loss_plot.setLabel("left", label, color=self._theme.foreground.name())

    def plot_items(self) -> tuple[pg.PlotItem, pg.PlotItem, pg.PlotItem]:
        """The step-loss, epoch-accuracy and epoch-loss plots (for layout checks)."""
        return self._loss_plot, self._acc_plot, self._eloss_plot

    def smoothing(self) -> float:
        return self._smoothing

    def set_smoothing(self, weight: float) -> None:
        """Set the EMA weight (clamped to 0..0.99); moves the slider too."""
        value = min(max(round(float(weight) * _SLIDER_STEPS), 0), _SLIDER_STEPS - 1)
        self._smoothing_slider.setValue(value)

    def log_scale(self) -> bool:
        return self._log_checkbox.isChecked()

    def set_log_scale(self, enabled: bool) -> None:
        self._log_checkbox.setChecked(bool(enabled))

    def set_comparison(self, name: str | None, epochs: Sequence[int], val_accuracy: Sequence[float],
                       val_loss: Sequence[float]) -> None:
        """Overlay another run's validation accuracy and loss per epoch (dashed), named
        ``name`` in the legends; ``name=None`` removes the overlay."""
        for legend, curve in ((self._acc_legend, self._compare_acc_curve), (self._eloss_legend, self._compare_eloss_curve)):
            legend.removeItem(curve)
        self._comparison = name
        if name is None:
            self._compare_acc_curve.setData([], [])
            self._compare_eloss_curve.setData([], [])
            return
        x = np.asarray(epochs, dtype=float)
        self._compare_acc_curve.setData(x, np.asarray(val_accuracy, dtype=float), connect="finite")
        self._compare_eloss_curve.setData(x, np.asarray(val_loss, dtype=float), connect="finite")
        self._acc_legend.addItem(self._compare_acc_curve, f"val ({name})")
        self._eloss_legend.addItem(self._compare_eloss_curve, f"val ({name})")
        self._fit_epoch_axes()
        self._apply_theme()

    def comparison(self) -> tuple[str | None, int]:
        """The compared run's name and how many epochs of it are drawn."""
        return self._comparison, len(self._compare_acc_curve.xData) if self._compare_acc_curve.xData is not None else 0

    def step_count(self) -> int:
        return len(self._steps)

    def epoch_count(self) -> int:
        return len(self._epochs)

    def best_epoch(self) -> int | None:
        """The epoch of the last EpochMetrics with ``is_best``; None before any."""
        return self._best_epoch

    def raw_losses(self) -> np.ndarray:
        return self._steps.column("loss").copy()

    def smoothed_losses(self) -> np.ndarray:
        return self._steps.column("smoothed").copy()

    def export_png(self, path: str | Path) -> Path:
        """Save the three plots (without the controls) as a PNG image."""
        path = Path(path)
        self.refresh()
        pixmap = self._graphics.grab()
        if pixmap.isNull() or not pixmap.save(str(path), "PNG"):
            raise OSError(f"Could not write the plot image to {path}")
        return path

    def export_csv(self, path: str | Path) -> Path:
        """Write steps then epochs to one CSV (columns :data:`CSV_COLUMNS`; blanks where n/a)."""
        path = Path(path)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            for epoch, step, global_step, loss, lr, _smoothed in self._steps.rows():
                writer.writerow(
                    ["step", _int(epoch), _int(step), _int(global_step), _num(loss)]
                    + ["", "", "", ""]
                    + [_num(lr), ""]
                )
            for epoch, tl, ta, vl, va, lr, best in self._epochs.rows():
                writer.writerow(
                    ["epoch", _int(epoch), "", "", ""]
                    + [_num(tl), _num(ta), _num(vl), _num(va), _num(lr), int(best)]
                )
        return path

    # -- slots ------------------------------------------------------------------------------

    @Slot(int)
    def _on_smoothing_slider_valueChanged(self, value: int) -> None:
        self._smoothing = value / _SLIDER_STEPS
        self._smoothing_value.setText(f"{self._smoothing:.2f}")
        self._ema = _EmaState(self._smoothing)
        if len(self._steps):
            self._steps.set_column("smoothed", self._ema.push_all(self._steps.column("loss")))
        self.refresh()
        self.smoothingChanged.emit(self._smoothing)

    @Slot(bool)
    def _on_log_checkbox_toggled(self, checked: bool) -> None:
        self._loss_plot.setLogMode(x=False, y=checked)  # which turns autorange back on
        self._loss_range, self._step_span = None, 0.0  # the loss axis is in other units now
        if not self._ranges_by_user:
            self._fit_step_axis()
            self._fit_loss_axis()
        self._update_loss_label()
        self.logScaleChanged.emit(checked)

    @Slot(object)
    def _on_loss_view_sigRangeChangedManually(self, _mask: object) -> None:
        self._ranges_by_user = True

    @Slot()
    def _on_refresh_timer_timeout(self) -> None:
        if self.isVisible():  # hidden meanwhile: showEvent draws what is buffered
            self._refresh_changed()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if watched is self._graphics and event.type() == QEvent.Type.Resize:
            self._fit_legends(event.size().width())
        return super().eventFilter(watched, event)

    def _fit_legends(self, width: int) -> None:
        """The lower plots share the view's width. A legend has its own fixed width, so where
        its one line is wider than its plot's share it takes two lines: otherwise it pushes the
        right-hand plot past the view's edge (at 1024×768 with the model pane shown, the loss
        plot lost its right side and its legend)."""
        axes = max(_AXIS_MIN, *(p.getAxis("left").width() for p in (self._acc_plot, self._eloss_plot)))
        share = (width - _LOWER_ROW_CHROME) / 2 - axes - _LEGEND_MARGIN
        for legend in (self._acc_legend, self._eloss_legend):
            legend.setColumnCount(_LOWER_LEGEND_ITEMS)  # laid out and sized on one line, to be measured
            if legend.boundingRect().width() > share:
                legend.setColumnCount(2)  # costs its data area a line's height, not the page a scroll bar

    def showEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        """Draw what was buffered while hidden before the first paint shows stale curves."""
        super().showEvent(event)
        self._refresh_changed()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            if not self._applying_theme:
                self._apply_theme()
        super().changeEvent(event)


def _int(value: float) -> int | str:
    return int(value) if math.isfinite(value) else ""


def _num(value: float) -> str:
    return repr(float(value))
