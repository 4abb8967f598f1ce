"""The training form and the live progress of a run.

The form edits a :class:`~headswap_gui.core.training.TrainConfig`; the config validates itself,
so a bad value is reported with core's own message instead of a second set of rules here.
Fields the form does not show (label smoothing, gradient clipping, …) are carried over from
the last :meth:`TrainingPanel.set_config`, so a config round-trips unchanged.

During a run the window feeds :meth:`TrainingPanel.add_event` with the core events; the panel
turns them into an overall progress bar (epochs and steps), epoch/step, loss, ETA and
throughput labels, and a status line with notes and how the run ended.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, Signal, Slot
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (
    QBoxLayout,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from headswap_gui.core import devices
from headswap_gui.core.data import AUGMENT_PRESETS
from headswap_gui.core.errors import HeadswapError
from headswap_gui.core.events import CacheValidation, EpochMetrics, Note, Progress, RunFinished, RunStarted, StepMetrics
from headswap_gui.core.freezing import FREEZE_POLICIES, OPTIMIZERS, SCHEDULES
from headswap_gui.core.training import TrainConfig
from headswap_gui.gui.buttons import push_button
from headswap_gui.gui.elided_label import ElidedLabel
from headswap_gui.gui.progress_bar import ProgressBar

__all__ = ["LearningRateSpinBox", "TrainingPanel", "format_duration"]

_PROGRESS_SCALE = 1000  # the bar counts in tenths of a percent
_WIDE_LAYOUT_PX = 640  # side-by-side setting groups from this width up

_FREEZE_LABELS = {
    "head": "Head only (fastest)",
    "gradual": "Head first, then everything",
    "last-k": "Head + last k blocks",
    "full": "Everything (full fine-tune)",
}
_FREEZE_TIPS = {
    "head": "Only the new head trains; the backbone's features can be cached once, which is very fast.",
    "gradual": "Train the head alone for a few epochs, then unfreeze the whole backbone at a lower learning rate.",
    "last-k": "Train the head and the last k blocks of the backbone (at a lower learning rate).",
    "full": "Train every layer; the backbone at a lower learning rate. Slowest, and needs the most data.",
}
_AUGMENT_LABELS = {
    "none": "None (allows feature caching)",
    "light": "Light (crop, flip)",
    "strong": "Strong (crop, flip, colour, rotation, erasing)",
}
_PRECISION_LABELS = {
    "auto": "Auto (bf16 if supported)",
    "fp32": "fp32 (full precision)",
    "bf16": "bf16 (mixed)",
    "fp16": "fp16 (mixed)",
}
_ERROR_STYLE = (  # translucent, so it blends onto light and dark window colours alike
    "QLabel { background-color: rgba(220, 60, 60, 0.16); border: 1px solid rgba(220, 60, 60, 0.55); "
    "border-radius: 4px; padding: 4px; }"
)
_FINISH_TEXT = {
    "completed": "Finished",
    "stopped": "Stopped",
    "early-stopped": "Stopped early",
    "diverged": "Diverged",
    "failed": "Failed",
}


def format_duration(seconds: float) -> str:
    """"45 s", "3 min 05 s", "2 h 07 min"; "—" when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class LearningRateSpinBox(QDoubleSpinBox):
    """A learning rate in scientific notation ("3e-4"); the arrows step 1 → 2 → 5 → 10."""

    _MANTISSAS = (1.0, 2.0, 5.0)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDecimals(12)
        self.setRange(1e-8, 10.0)
        self.setKeyboardTracking(False)
        self.setValue(1e-3)

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt override
        if value <= 0 or value >= 0.01:
            return f"{value:.3g}"
        mantissa, exponent = f"{value:.2e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"

    def valueFromText(self, text: str) -> float:  # noqa: N802 - Qt override
        try:
            return float(text.strip().replace(",", "."))
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int) -> object:  # noqa: D102 - Qt override
        stripped = text.strip().replace(",", ".")
        if not stripped:
            return (QValidator.State.Intermediate, text, pos)
        try:
            value = float(stripped)
        except ValueError:
            partial = all(ch in "0123456789.eE-+" for ch in stripped)
            return (QValidator.State.Intermediate if partial else QValidator.State.Invalid, text, pos)
        if self.minimum() <= value <= self.maximum():
            return (QValidator.State.Acceptable, text, pos)
        return (QValidator.State.Intermediate, text, pos)

    def stepBy(self, steps: int) -> None:  # noqa: N802 - Qt override
        value = self.value()
        for _ in range(abs(steps)):
            value = self._next(value, up=steps > 0)
        self.setValue(value)

    def _next(self, value: float, *, up: bool) -> float:
        exponent = math.floor(math.log10(value))
        ladder = [m * 10.0**e for e in (exponent - 1, exponent, exponent + 1) for m in self._MANTISSAS]
        if up:
            return next((v for v in ladder if v > value * (1 + 1e-9)), value * 10)
        return next((v for v in reversed(ladder) if v < value * (1 - 1e-9)), value / 10)


class TrainingPanel(QWidget):
    """Training settings, Start/Stop, and the progress of the current run.

    Signals: ``startRequested(TrainConfig)`` when Start is clicked with a valid form (an
    invalid one shows core's message inline instead); ``stopRequested()`` when Stop is
    clicked. The window calls :meth:`set_running` when the run really starts and ends.
    """

    startRequested = Signal(object)
    stopRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.clock: Callable[[], float] = time.monotonic  # rates and times left; a test may use its own
        self.setObjectName("trainingPanel")
        self.setAccessibleName(self.tr("Training settings and progress"))
        self._base = TrainConfig()
        self._running = False
        self._model_input_size: int | None = None
        self._reset_run_state()
        self._build()
        self.refresh_devices()
        self.set_config(self._base)
        self.set_running(False)

    # -- construction -----------------------------------------------------------------------

    def _build(self) -> None:
        self._form_labels: list[QLabel] = []
        # Training schedule.
        self._epochs = self._spin("epochsSpinBox", self.tr("Epochs"), 1, 10_000)
        self._epochs.setToolTip(self.tr("Full passes over the training images"))
        self._batch = self._spin("batchSizeSpinBox", self.tr("Batch size"), 1, 8192)
        self._batch.setToolTip(self.tr("Images per optimisation step; lower it if memory runs out"))
        self._lr = LearningRateSpinBox(self)
        self._name(self._lr, "learningRateSpinBox", self.tr("Learning rate"))
        self._lr.setToolTip(
            self.tr("Learning rate of the head; a frozen-backbone head trains well at 1e-3. "
                    "Type a value like 3e-4, or use the arrows (1, 2, 5 steps).")
        )
        self._freeze = QComboBox(self)
        self._name(self._freeze, "freezeComboBox", self.tr("What trains"))
        for policy in FREEZE_POLICIES:
            self._freeze.addItem(self.tr(_FREEZE_LABELS.get(policy, policy)), policy)
            self._freeze.setItemData(
                self._freeze.count() - 1, self.tr(_FREEZE_TIPS.get(policy, "")), Qt.ItemDataRole.ToolTipRole
            )
        self._freeze.currentIndexChanged.connect(self._on_freeze_currentIndexChanged)
        self._unfreeze_after = self._spin("unfreezeAfterSpinBox", self.tr("Unfreeze after (epochs)"), 0, 10_000)
        self._unfreeze_after.setToolTip(self.tr("Epochs of head-only training before the backbone unfreezes"))
        self._last_k = self._spin("lastKSpinBox", self.tr("Blocks to train (k)"), 1, 1000)
        self._last_k.setToolTip(self.tr("How many of the backbone's last blocks train with the head"))
        self._augment = QComboBox(self)
        self._name(self._augment, "augmentComboBox", self.tr("Augmentation"))
        for preset in AUGMENT_PRESETS:
            self._augment.addItem(self.tr(_AUGMENT_LABELS.get(preset, preset)), preset)
        self._augment.setToolTip(
            self.tr("Random changes to the training images; any augmentation turns the feature cache off")
        )
        self._image_size = self._spin("imageSizeSpinBox", self.tr("Image size"), 0, 2048)
        self._image_size.setSingleStep(16)
        self._image_size.setSuffix(" px")
        self._image_size.setToolTip(
            self.tr("Input size the images are resized and cropped to; the model's own size by default")
        )
        self._update_image_size_default()

        self._schedule_form = QFormLayout()
        self._unfreeze_row_label = QLabel(self.tr("Unfreeze after"), self)
        self._last_k_row_label = QLabel(self.tr("Blocks to train"), self)
        for label, field in (
            (self.tr("&Epochs"), self._epochs),
            (self.tr("&Batch size"), self._batch),
            (self.tr("&Learning rate"), self._lr),
            (self.tr("&What trains"), self._freeze),
            (self._unfreeze_row_label, self._unfreeze_after),
            (self._last_k_row_label, self._last_k),
            (self.tr("&Augmentation"), self._augment),
            (self.tr("&Image size"), self._image_size),
        ):
            self._add_row(self._schedule_form, label, field)

        # Hardware and run.
        self._device = QComboBox(self)
        self._name(self._device, "deviceComboBox", self.tr("Device"))
        self._device.currentIndexChanged.connect(self._on_device_currentIndexChanged)
        self._precision = QComboBox(self)
        self._name(self._precision, "precisionComboBox", self.tr("Precision"))
        for precision in devices.PRECISIONS:
            self._precision.addItem(self.tr(_PRECISION_LABELS.get(precision, precision)), precision)
        self._precision.setToolTip(self.tr("Mixed precision runs on CUDA GPUs only; elsewhere training uses fp32"))
        self._workers = self._spin("workersSpinBox", self.tr("Loader workers"), 0, max(64, devices.cpu_cores()))
        self._workers.setSpecialValueText(self.tr("none"))
        self._workers.setToolTip(self.tr("Processes that decode images in parallel; 0 decodes in the training thread"))
        self._seed = self._spin("seedSpinBox", self.tr("Seed"), 0, 2**31 - 1)
        self._seed.setToolTip(self.tr("Seeds the split, the shuffling and the augmentation, so a run can be repeated"))
        self._patience = self._spin("patienceSpinBox", self.tr("Early stopping patience"), 0, 10_000)
        self._patience.setSpecialValueText(self.tr("off"))
        self._patience.setSuffix(self.tr(" epochs"))
        self._patience.setToolTip(self.tr("Stop when validation has not improved for this many epochs (0: off)"))
        self._optimizer = QComboBox(self)
        self._name(self._optimizer, "optimizerComboBox", self.tr("Optimizer"))
        for name in OPTIMIZERS:
            self._optimizer.addItem({"adamw": "AdamW", "sgd": "SGD (momentum 0.9)"}.get(name, name), name)
        self._schedule = QComboBox(self)
        self._name(self._schedule, "scheduleComboBox", self.tr("Learning-rate schedule"))
        for name in SCHEDULES:
            self._schedule.addItem(
                {"cosine": self.tr("Cosine (with warm-up)"), "onecycle": self.tr("One-cycle"),
                 "constant": self.tr("Constant")}.get(name, name),
                name,
            )
        self._weight_decay = QDoubleSpinBox(self)
        self._name(self._weight_decay, "weightDecaySpinBox", self.tr("Weight decay"))
        self._weight_decay.setDecimals(4)
        self._weight_decay.setRange(0.0, 10.0)
        self._weight_decay.setSingleStep(0.01)
        self._val_fraction = QDoubleSpinBox(self)
        self._name(self._val_fraction, "valFractionSpinBox", self.tr("Validation share"))
        self._val_fraction.setDecimals(0)
        self._val_fraction.setRange(1, 90)
        self._val_fraction.setSuffix(" %")
        self._val_fraction.setToolTip(
            self.tr("Share of each class held out for validation (ignored when the folder has train/ and val/)")
        )

        self._run_form = QFormLayout()
        for label, field in (
            (self.tr("&Device"), self._device),
            (self.tr("&Precision"), self._precision),
            (self.tr("Early s&top"), self._patience),
        ):
            self._add_row(self._run_form, label, field)
        self._more_button = QToolButton(self)
        self._name(self._more_button, "moreSettingsToggle", self.tr("Show more settings"))
        self._more_button.setText(self.tr("More settings"))
        self._more_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self._more_button.setArrowType(Qt.ArrowType.RightArrow)
        self._more_button.setCheckable(True)
        self._more_button.setAutoRaise(True)
        self._more_button.toggled.connect(self._on_more_button_toggled)
        self._run_form.addRow(self._more_button)
        self._more_fields = (
            self._seed, self._workers, self._optimizer, self._schedule, self._weight_decay, self._val_fraction
        )
        for label, field in (
            (self.tr("See&d"), self._seed),
            (self.tr("Loader wor&kers"), self._workers),
            (self.tr("&Optimizer"), self._optimizer),
            (self.tr("LR sc&hedule"), self._schedule),
            (self.tr("Weight de&cay"), self._weight_decay),
            (self.tr("&Validation"), self._val_fraction),
        ):
            self._add_row(self._run_form, label, field)
            self._run_form.setRowVisible(field, False)

        # One label column width for both groups, so the fields line up when stacked.
        label_width = max(label.sizeHint().width() for label in self._form_labels)
        for label in self._form_labels:
            label.setMinimumWidth(label_width)

        self._schedule_box = QGroupBox(self.tr("Training"), self)
        self._schedule_box.setLayout(self._schedule_form)
        self._run_box = QGroupBox(self.tr("Hardware and run"), self)
        self._run_box.setLayout(self._run_form)
        self._groups = QBoxLayout(QBoxLayout.Direction.TopToBottom)
        self._groups.setSpacing(8)
        self._groups.addWidget(self._schedule_box)
        self._groups.addWidget(self._run_box)

        self._form_error = QLabel(self)
        self._form_error.setObjectName("trainingFormError")
        self._form_error.setAccessibleName(self.tr("Settings error"))
        self._form_error.setWordWrap(True)
        self._form_error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._form_error.setStyleSheet(_ERROR_STYLE)
        self._form_error.hide()

        form_widget = QWidget(self)
        form_layout = QVBoxLayout(form_widget)
        form_layout.setContentsMargins(0, 0, 0, 0)
        form_layout.addLayout(self._groups)
        form_layout.addWidget(self._form_error)
        form_layout.addStretch(1)
        self._form_widget = form_widget
        scroll = QScrollArea(self)
        scroll.setObjectName("trainingFormScroll")
        scroll.setAccessibleName(self.tr("Training settings"))
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(form_widget)
        self._scroll = scroll

        # The settings fold away while a run trains, so the plots get the page's height on a
        # small screen; the header says what the run uses either way.
        self._settings_toggle = QToolButton(self)
        self._name(self._settings_toggle, "settingsToggle", self.tr("Show the training settings"))
        self._settings_toggle.setText(self.tr("Settings"))
        self._settings_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self._settings_toggle.setCheckable(True)
        self._settings_toggle.setChecked(True)
        self._settings_toggle.setAutoRaise(True)
        self._settings_toggle.setArrowType(Qt.ArrowType.DownArrow)
        self._settings_toggle.toggled.connect(self._on_settings_toggle_toggled)
        self._settings_summary = ElidedLabel(self)
        self._settings_summary.setObjectName("settingsSummary")
        self._settings_summary.setAccessibleName(self.tr("Settings of this run"))
        self._settings_summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._settings_summary.hide()

        # Start / Stop.
        self._start_button = push_button(
            self, self.tr("Start training"), name="startButton", accessible=self.tr("Start training"),
            on_click=self._on_start_button_clicked,
        )
        self._start_button.setDefault(True)
        self._stop_button = push_button(
            self, self.tr("Stop"), name="stopButton", accessible=self.tr("Stop training"),
            tooltip=self.tr("Stop after the current step; the best epoch so far is kept"),
            on_click=self._on_stop_button_clicked,
        )
        # One header row: the settings toggle (or the run's settings in one line), Start, Stop.
        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.addWidget(self._settings_toggle)
        header.addWidget(self._settings_summary, 1)
        header.addStretch(0)
        header.addWidget(self._start_button)
        header.addWidget(self._stop_button)

        # Progress.
        self._progress = ProgressBar(self)
        self._name(self._progress, "trainingProgressBar", self.tr("Overall training progress"))
        self._progress.setRange(0, _PROGRESS_SCALE)
        self._progress.setTextVisible(True)
        self._epoch_label = self._value_label("epochLabel", self.tr("Epoch"))
        self._step_label = self._value_label("stepLabel", self.tr("Step"))
        self._loss_label = self._value_label("lossLabel", self.tr("Loss"))
        self._val_label = self._value_label("valLabel", self.tr("Validation"))
        self._eta_label = self._value_label("etaLabel", self.tr("Time left"))
        self._speed_label = self._value_label("speedLabel", self.tr("Speed"))
        stats = QGridLayout()
        stats.setHorizontalSpacing(12)
        stats.setVerticalSpacing(2)
        # Two pairs a row: three would make the widest figures of each row (a step count, a
        # loss with its val loss, a speed) wider than the page on a 1024-px screen.
        for i, (caption, label) in enumerate(
            (
                (self.tr("Epoch"), self._epoch_label),
                (self.tr("Step"), self._step_label),
                (self.tr("Validation"), self._val_label),
                (self.tr("Loss"), self._loss_label),
                (self.tr("Time left"), self._eta_label),
                (self.tr("Speed"), self._speed_label),
            )
        ):
            caption_label = QLabel(caption + ":", self)
            caption_label.setBuddy(label)
            row, col = divmod(i, 2)
            stats.addWidget(caption_label, row, 2 * col)
            stats.addWidget(label, row, 2 * col + 1)
        for column in (1, 3):
            stats.setColumnStretch(column, 1)
        self._status_label = QLabel(self)
        self._status_label.setObjectName("trainingStatusLabel")
        self._status_label.setAccessibleName(self.tr("Training status"))
        self._status_label.setWordWrap(True)
        self._status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._status_label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)

        # A frame without a title: the progress bar says what the box is, and on a 720-px
        # screen the title's line is the one the plots below lacked (they scrolled).
        progress_box = QFrame(self)
        progress_box.setObjectName("trainingProgressBox")
        progress_box.setAccessibleName(self.tr("Progress"))
        progress_box.setFrameShape(QFrame.Shape.StyledPanel)
        progress_layout = QVBoxLayout(progress_box)
        progress_layout.setContentsMargins(8, 4, 8, 4)
        progress_layout.setSpacing(2)
        progress_layout.addWidget(self._progress)
        progress_layout.addLayout(stats)
        progress_layout.addWidget(self._status_label)
        progress_box.setVisible(False)  # nothing to show before the first run: the plots get the room
        self._progress_box = progress_box

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.setSpacing(4)
        layout.addLayout(header)
        layout.addWidget(scroll, 1)
        layout.addWidget(progress_box)
        self._layout = layout
        # Never taller than the form needs: the plots below take the rest of the page.
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)

    def _name(self, widget: QWidget, object_name: str, accessible: str) -> None:
        widget.setObjectName(object_name)
        widget.setAccessibleName(accessible)

    def _spin(self, object_name: str, accessible: str, low: int, high: int) -> QSpinBox:
        spin = QSpinBox(self)
        self._name(spin, object_name, accessible)
        spin.setRange(low, high)
        spin.setGroupSeparatorShown(True)
        spin.setKeyboardTracking(False)
        return spin

    def _add_row(self, form: QFormLayout, label: str | QLabel, field: QWidget) -> None:
        field.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        if isinstance(field, QComboBox):  # long item texts must not force the panel wider
            field.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            field.setMinimumContentsLength(12)
        if isinstance(label, str):
            label = QLabel(label, self)
        label.setBuddy(field)
        self._form_labels.append(label)
        form.addRow(label, field)

    def _value_label(self, object_name: str, accessible: str) -> QLabel:
        label = QLabel("—", self)
        self._name(label, object_name, accessible)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        return label

    # -- the form ---------------------------------------------------------------------------

    def seed(self) -> int:
        """The Seed field: it also seeds a head built for the next run."""
        return self._seed.value()

    def config(self) -> TrainConfig:
        """The form as a TrainConfig; raises ``HeadswapError`` (core's message) when invalid."""
        image_size = self._image_size.value()
        patience = self._patience.value()
        return replace(
            self._base,
            epochs=self._epochs.value(),
            batch_size=self._batch.value(),
            lr=float(self._lr.value()),
            freeze=self._freeze.currentData(),
            unfreeze_after=self._unfreeze_after.value(),
            last_k=self._last_k.value(),
            augment=self._augment.currentData(),
            image_size=image_size if image_size > 0 else None,
            device=self._device.currentData() or "auto",
            precision=self._precision.currentData(),
            workers=self._workers.value(),
            seed=self._seed.value(),
            patience=patience if patience > 0 else None,
            optimizer=self._optimizer.currentData(),
            schedule=self._schedule.currentData(),
            weight_decay=float(self._weight_decay.value()),
            val_fraction=round(self._val_fraction.value()) / 100.0,
        )

    def set_config(self, config: TrainConfig) -> None:
        """Fill the form from ``config``; fields the form does not show are kept as they are."""
        self._base = config
        self._epochs.setValue(config.epochs)
        self._batch.setValue(config.batch_size)
        self._lr.setValue(config.lr)
        _select(self._freeze, config.freeze)
        self._unfreeze_after.setValue(config.unfreeze_after)
        self._last_k.setValue(config.last_k)
        _select(self._augment, config.augment)
        self._image_size.setValue(config.image_size or 0)
        if not _select(self._device, config.device):
            # A device saved on another machine (say cuda:1): keep it visible, marked missing.
            self._device.addItem(self.tr("{name} (not available here)").format(name=config.device), config.device)
            self._device.setCurrentIndex(self._device.count() - 1)
        _select(self._precision, config.precision)
        self._workers.setValue(config.workers)
        self._seed.setValue(config.seed)
        self._patience.setValue(config.patience or 0)
        _select(self._optimizer, config.optimizer)
        _select(self._schedule, config.schedule)
        self._weight_decay.setValue(config.weight_decay)
        self._val_fraction.setValue(round(config.val_fraction * 100))
        self._form_error.hide()
        self._update_freeze_rows()
        self._update_precision_enabled()

    def set_model_input_size(self, size: int | None) -> None:
        """Show the loaded model's own input size in the "model default" choice."""
        self._model_input_size = size
        self._update_image_size_default()

    def refresh_devices(self) -> None:
        """Re-list the devices (CUDA memory changes as other programs run)."""
        current = self._device.currentData() if self._device.count() else "auto"
        self._device.blockSignals(True)
        self._device.clear()
        self._device.addItem(self.tr("Automatic (best available)"), "auto")
        for info in devices.list_devices():
            self._device.addItem(_device_text(info), info.name)
            self._device.setItemData(self._device.count() - 1, f"{info.name}: {info.label}", Qt.ItemDataRole.ToolTipRole)
        view = self._device.view()
        view.setMinimumWidth(view.sizeHintForColumn(0) + 24)  # the list shows whole names
        self._device.blockSignals(False)
        if not _select(self._device, current):
            self._device.setCurrentIndex(0)
        self._update_precision_enabled()

    def device_names(self) -> list[str]:
        return [self._device.itemData(i) for i in range(self._device.count())]

    # -- running ----------------------------------------------------------------------------

    def set_running(self, running: bool) -> None:
        """Lock the form and swap Start for Stop while a run is active. The settings fold away
        when a run starts and stay folded after it, so its curves keep the page's height; the
        header's toggle brings them back. Saying it again changes nothing."""
        starting = bool(running) and not self._running
        self._running = bool(running)
        self._form_widget.setEnabled(not running)
        self._start_button.setEnabled(not running)
        self._stop_button.setEnabled(running)
        if starting:
            self.set_settings_expanded(False)
            self._progress_box.setVisible(True)
        self._settings_summary.set_full_text(self.settings_summary())
        if starting:
            self._reset_display()
            self._progress.setRange(0, 0)  # busy until RunStarted says how long the run is
            self._set_status(self.tr("Preparing the run…"))

    def is_running(self) -> bool:
        return self._running

    @Slot(object)
    def add_event(self, event: object) -> None:
        """Show one core event (RunStarted, Progress, Note, CacheValidation, StepMetrics,
        EpochMetrics, RunFinished); anything else is ignored."""
        if isinstance(event, RunStarted):
            self._on_run_started(event)
        elif isinstance(event, Progress):
            self._on_stage_progress(event)
        elif isinstance(event, Note):
            self._notes.append(event.message)
            self._set_status(self._status_prefix(), note=event.message)
        elif isinstance(event, CacheValidation):
            # Short: the readout's widest figure sets the page's width (1024-px screens).
            self._val_label.setText(self.tr("{acc} (head on {cached:,} / {total:,} cached)").format(
                acc=_percent(event.val_accuracy), cached=event.cached, total=event.total))
        elif isinstance(event, StepMetrics):
            self._on_step(event)
        elif isinstance(event, EpochMetrics):
            self._on_epoch(event)
        elif isinstance(event, RunFinished):
            self._on_finished(event)

    def progress_value(self) -> int:
        """Overall progress of the run in percent (0–100)."""
        if self._progress.maximum() == 0:
            return 0
        return int(round(100 * self._fraction))

    def status_text(self) -> str:
        return self._status_label.text()

    def notes(self) -> list[str]:
        return list(self._notes)

    # -- event handling ---------------------------------------------------------------------

    def _reset_run_state(self) -> None:
        self._epochs_total = 0
        self._steps_per_epoch = 0
        self._start_epoch = 1
        self._fraction = 0.0
        self._stage: str | None = None
        self._features_cached = False
        self._device_text = ""
        self._notes: list[str] = []
        self._rate_origin: tuple[float, float] | None = None  # (time, completed steps)
        self._epoch_eta: tuple[float, float] | None = None  # (time, eta seconds)
        self._stage_origin: tuple[str, float, int] | None = None  # (stage, time, images done)
        self._speed: float | None = None  # images/s as shown: smoothed, so it does not jump
        self._last_val: str = "—"

    def _reset_display(self) -> None:
        self._reset_run_state()
        self._progress.setRange(0, _PROGRESS_SCALE)
        self._progress.setValue(0)
        self._progress.setFormat("%p%")
        for label in (self._epoch_label, self._step_label, self._loss_label, self._val_label,
                      self._eta_label, self._speed_label):
            label.setText("—")

    def _on_run_started(self, event: RunStarted) -> None:
        self._reset_display()
        self._epochs_total = max(1, event.epochs)
        self._steps_per_epoch = max(1, event.steps_per_epoch)
        self._start_epoch = max(1, event.start_epoch)
        self._features_cached = event.features_cached
        self._device_text = event.device
        self._set_fraction((self._start_epoch - 1) / self._epochs_total)
        self._epoch_label.setText(f"{self._start_epoch - 1} / {self._epochs_total}")
        self._step_label.setText(f"0 / {self._steps_per_epoch:,}")
        self._set_status(self._status_prefix())

    def _status_prefix(self) -> str:
        if not self._epochs_total:
            return self.tr("Training…")
        text = self.tr("Training on {device}").format(device=self._device_text or "?")
        if self._features_cached:
            text += self.tr(" — features cached: training the head on cached backbone features")
        return text

    def _on_stage_progress(self, event: Progress) -> None:
        self._stage = event.stage
        total = max(event.total, 1)
        self._progress.setRange(0, _PROGRESS_SCALE)
        self._progress.setValue(round(_PROGRESS_SCALE * min(event.done / total, 1.0)))
        self._progress.setFormat(f"{event.stage}: %p%")
        # The feature pass is often the longest phase: its own rate and time left.
        now = self.clock()
        if self._stage_origin is None or self._stage_origin[0] != event.stage:
            self._stage_origin = (event.stage, now, event.done)
        else:
            _, t0, done0 = self._stage_origin
            if now - t0 >= 0.5 and event.done > done0:  # a rate over less than half a second is noise
                rate = (event.done - done0) / (now - t0)
                self._show_speed(rate)
                self._eta_label.setText("≈ " + format_duration(max(event.total - event.done, 0) / rate))
        self._set_status(
            self._status_prefix(),
            note=self.tr("{stage}: {done:,} / {total:,} images").format(
                stage=event.stage[:1].upper() + event.stage[1:], done=event.done, total=event.total
            ),
        )

    def _leave_stage(self) -> None:
        if self._stage is not None:
            self._stage = None
            self._speed = None  # the training steps' own rate from here on
            self._eta_label.setText("—")  # until the steps give a time left of their own
            self._progress.setFormat("%p%")
            self._set_status(self._status_prefix(), note=self._notes[-1] if self._notes else None)

    def _on_step(self, event: StepMetrics) -> None:
        self._leave_stage()
        steps = max(1, event.steps_per_epoch)
        self._steps_per_epoch = steps
        epochs = max(self._epochs_total, event.epoch, 1)
        done_steps = (event.epoch - 1) * steps + min(event.step, steps)
        self._set_fraction(done_steps / (epochs * steps))
        self._epoch_label.setText(f"{event.epoch} / {epochs}")
        self._step_label.setText(self.tr("{step:,} / {steps:,} in this epoch · {done:,} of {total:,}").format(
            step=event.step, steps=steps, done=event.global_step, total=epochs * steps))
        self._loss_label.setText(_number(event.loss))
        self._show_speed(event.images_per_second)
        now = self.clock()
        if self._rate_origin is None:
            self._rate_origin = (now, float(done_steps))
        elif self._epoch_eta is None:
            # Before the first epoch ends: extrapolate the step rate (validation not included).
            t0, s0 = self._rate_origin
            if now > t0 and done_steps > s0:
                rate = (done_steps - s0) / (now - t0)
                self._eta_label.setText("≈ " + format_duration((epochs * steps - done_steps) / rate))
        if self._epoch_eta is not None:
            t0, eta = self._epoch_eta
            self._eta_label.setText(format_duration(max(eta - (now - t0), 0.0)))

    def _on_epoch(self, event: EpochMetrics) -> None:
        self._leave_stage()
        epochs = max(event.epochs, 1)
        self._epochs_total = epochs
        self._set_fraction(event.epoch / epochs)
        self._epoch_label.setText(f"{event.epoch} / {epochs}")
        spe = self._steps_per_epoch
        self._step_label.setText(self.tr("{step:,} / {steps:,} in this epoch · {done:,} of {total:,}").format(
            step=spe, steps=spe, done=event.epoch * spe, total=epochs * spe))
        self._loss_label.setText(self.tr("{train} (val {val})").format(
            train=_number(event.train_loss), val=_number(event.val_loss)
        ))
        best = self.tr(" — best so far") if event.is_best else ""
        self._val_label.setText(f"{_percent(event.val_accuracy)}{best}")
        self._speed = None  # the epoch's own average, as measured
        self._show_speed(event.images_per_second)
        self._epoch_eta = (self.clock(), float(event.eta_seconds))
        self._eta_label.setText(format_duration(event.eta_seconds))

    def _show_speed(self, images_per_second: float) -> None:
        """Images/s, smoothed over recent steps (one step's rate swings with the batch)."""
        if not (math.isfinite(images_per_second) and images_per_second > 0):
            return
        self._speed = images_per_second if self._speed is None else 0.8 * self._speed + 0.2 * images_per_second
        self._speed_label.setText(self.tr("{v:,.0f} images/s").format(v=self._speed))

    def _on_finished(self, event: RunFinished) -> None:
        self._leave_stage()
        if event.reason == "completed":
            self._set_fraction(1.0)
        if self._progress.maximum() == 0:  # finished before RunStarted set a range
            self._progress.setRange(0, _PROGRESS_SCALE)
            self._progress.setValue(round(_PROGRESS_SCALE * self._fraction))
        self._eta_label.setText(format_duration(0) if event.reason == "completed" else "—")
        title = self.tr(_FINISH_TEXT.get(event.reason, event.reason))
        text = f"<b>{title}</b>"
        if event.message:
            text += ": " + _escape(event.message)
        if (
            event.best_epoch is not None
            and event.best_val_accuracy is not None
            and f"epoch {event.best_epoch}" not in event.message
        ):
            text += "<br>" + self.tr("Best epoch {epoch}: {acc} validation accuracy").format(
                epoch=event.best_epoch, acc=_percent(event.best_val_accuracy)
            )
        if event.run_dir and event.saved_epochs:
            text += "<br>" + self.tr("The run folder holds {n} finished epoch(s): {path}").format(
                n=event.saved_epochs, path=_escape(_short_path(event.run_dir))
            )
        elif event.run_dir and event.saved_epochs == 0:
            text += "<br>" + self.tr("No epoch finished; the run folder holds only the starting model: {path}").format(
                path=_escape(_short_path(event.run_dir))
            )
        bad = event.reason in ("failed", "diverged")
        self._status_label.setStyleSheet(_ERROR_STYLE if bad else "")
        self._status_label.setText(text)
        self._status_label.setToolTip("\n".join([*self._notes, *([event.run_dir] if event.run_dir else [])]))

    def _set_fraction(self, fraction: float) -> None:
        self._fraction = min(max(fraction, 0.0), 1.0)
        if self._progress.maximum() == 0:
            self._progress.setRange(0, _PROGRESS_SCALE)
        if self._stage is None:
            self._progress.setValue(round(_PROGRESS_SCALE * self._fraction))

    def _set_status(self, text: str, note: str | None = None) -> None:
        self._status_label.setStyleSheet("")
        html = _escape(text)
        if note:
            html += "<br><i>" + _escape(note) + "</i>"
        self._status_label.setText(html)
        self._status_label.setToolTip("\n".join(self._notes))

    # -- slots ------------------------------------------------------------------------------

    @Slot()
    def _on_start_button_clicked(self) -> None:
        try:
            config = self.config()
        except HeadswapError as exc:
            self._form_error.setText(str(exc))
            self._form_error.show()
            return
        self._form_error.hide()
        self.startRequested.emit(config)

    @Slot()
    def _on_stop_button_clicked(self) -> None:
        self._stop_button.setEnabled(False)
        self._set_status(self.tr("Stopping after the current step…"))
        self.stopRequested.emit()

    def settings_expanded(self) -> bool:
        return self._settings_toggle.isChecked()

    def set_settings_expanded(self, expanded: bool) -> None:
        """Show the settings form, or fold it into a one-line summary above the progress."""
        self._settings_toggle.setChecked(expanded)

    def settings_summary(self) -> str:
        """The form in one line: "8 epochs · batch 32 · lr 0.001 · head only · 224 px · cpu"."""
        size = self._image_size.value()
        parts = [
            self.tr("{n} epochs").format(n=self._epochs.value()) if self._epochs.value() != 1 else self.tr("1 epoch"),
            self.tr("batch {n}").format(n=self._batch.value()),
            self.tr("lr {lr}").format(lr=f"{float(self._lr.value()):g}"),
            self._freeze.currentText().split(" (")[0].lower(),
            self.tr("{n} px").format(n=size) if size else self._image_size.specialValueText(),
            self._device.currentText().split(" (")[0],
        ]
        return " · ".join(part for part in parts if part)

    @Slot(bool)
    def _on_settings_toggle_toggled(self, expanded: bool) -> None:
        self._settings_toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self._scroll.setVisible(expanded)
        self._settings_summary.set_full_text(self.settings_summary())
        self._settings_summary.setVisible(not expanded)
        self.updateGeometry()

    @Slot(bool)
    def _on_more_button_toggled(self, checked: bool) -> None:
        self._more_button.setArrowType(Qt.ArrowType.DownArrow if checked else Qt.ArrowType.RightArrow)
        for field in self._more_fields:
            self._run_form.setRowVisible(field, checked)
        self._fit_scroll_to_form()

    def _fit_scroll_to_form(self) -> None:
        """The settings area is as tall as the form and no taller: the plots below get the rest
        of the page, and the form scrolls only when the screen is too short for it."""
        self._form_widget.adjustSize()
        self._scroll.setMaximumHeight(self._form_widget.sizeHint().height() + 2 * self._scroll.frameWidth())

    @Slot(int)
    def _on_freeze_currentIndexChanged(self, _index: int) -> None:
        self._update_freeze_rows()

    @Slot(int)
    def _on_device_currentIndexChanged(self, _index: int) -> None:
        self._update_precision_enabled()

    def _update_freeze_rows(self) -> None:
        policy = self._freeze.currentData()
        self._schedule_form.setRowVisible(self._unfreeze_after, policy == "gradual")
        self._schedule_form.setRowVisible(self._last_k, policy == "last-k")
        self._freeze.setToolTip(self.tr(_FREEZE_TIPS.get(policy, "")))
        self._fit_scroll_to_form()

    def _update_precision_enabled(self) -> None:
        device = self._device.currentData() or "auto"
        cuda_possible = device.startswith("cuda") or (
            device == "auto" and any(str(n).startswith("cuda") for n in self.device_names())
        )
        self._precision.setEnabled(cuda_possible)
        self._precision.setToolTip(
            self.tr("Mixed precision runs on CUDA GPUs only")
            if cuda_possible
            else self.tr("This device trains in fp32; mixed precision is for CUDA GPUs")
        )

    def _update_image_size_default(self) -> None:
        if self._model_input_size:
            text = self.tr("model default ({size} px)").format(size=self._model_input_size)
        else:
            text = self.tr("model default")
        self._image_size.setSpecialValueText(text)

    def resizeEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt override
        wide = self.width() >= _WIDE_LAYOUT_PX
        direction = QBoxLayout.Direction.LeftToRight if wide else QBoxLayout.Direction.TopToBottom
        if self._groups.direction() != direction:
            self._groups.setDirection(direction)
            self._fit_scroll_to_form()
        super().resizeEvent(event)

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.LocaleChange:
            self._update_image_size_default()
        super().changeEvent(event)


def _device_text(info: devices.DeviceInfo) -> str:
    """"cuda:0 · NVIDIA H200, 140 GiB (120 free)"; the CPU and MPS keep core's label."""
    if info.total_memory is None or not info.name.startswith("cuda"):
        return info.label
    gpu = info.label.split(" (")[0]
    text = f"{info.name} · {gpu}, {info.total_memory / 2**30:.0f} GiB"
    if info.free_memory is not None:
        text += f" ({info.free_memory / 2**30:.0f} free)"
    return text


def _select(combo: QComboBox, data: object) -> bool:
    index = combo.findData(data)
    if index < 0:
        return False
    combo.setCurrentIndex(index)
    return True


def _number(value: float) -> str:
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:.4g}"


def _percent(value: float) -> str:
    return f"{value:.1%}" if math.isfinite(value) else "—"


def _short_path(path: str, keep: int = 2) -> str:
    """A long folder path as its last ``keep`` parts ("…/runs/2026-12-02_13-45-01"): a path
    cannot wrap, so in full it would set the page's width; the tooltip has all of it."""
    parts = Path(path).parts
    if len(path) <= 48 or len(parts) <= keep:
        return path
    return str(Path("…", *parts[-keep:]))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

