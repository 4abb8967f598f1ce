"""TrainingPanel: the form round-trips a TrainConfig, events drive the progress display."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from headswap_gui.core.events import CacheValidation, EpochMetrics, Note, Progress, RunFinished, RunStarted, StepMetrics
from headswap_gui.core.training import TrainConfig
from headswap_gui.gui.training_panel import LearningRateSpinBox, TrainingPanel, format_duration


@pytest.fixture
def panel(qtbot) -> TrainingPanel:
    widget = TrainingPanel()
    qtbot.addWidget(widget)
    widget.resize(420, 700)
    return widget


def child(panel: TrainingPanel, name: str):
    widget = panel.findChild(object, name)
    assert widget is not None, name
    return widget


def test_config_round_trip_keeps_every_field(panel) -> None:
    config = TrainConfig(
        epochs=7, batch_size=48, lr=3e-4, weight_decay=0.05, optimizer="sgd", schedule="onecycle",
        freeze="last-k", last_k=3, unfreeze_after=4, augment="strong", image_size=96,
        val_fraction=0.25, seed=11, device="cpu", precision="fp32", workers=2, patience=5,
        label_smoothing=0.1, grad_clip=1.0, class_weights=True,  # not on the form: carried over
    )
    panel.set_config(config)
    assert panel.config() == config
    # Defaults, with None for "model default" image size and "off" patience.
    panel.set_config(TrainConfig())
    assert panel.config() == TrainConfig()
    assert panel.config().image_size is None and panel.config().patience is None


def test_freeze_policy_shows_its_own_setting(panel) -> None:
    panel.show()
    freeze = child(panel, "freezeComboBox")
    unfreeze, last_k = child(panel, "unfreezeAfterSpinBox"), child(panel, "lastKSpinBox")
    freeze.setCurrentIndex(freeze.findData("gradual"))
    assert unfreeze.isVisible() and not last_k.isVisible()
    freeze.setCurrentIndex(freeze.findData("last-k"))
    assert last_k.isVisible() and not unfreeze.isVisible()
    freeze.setCurrentIndex(freeze.findData("head"))
    assert not last_k.isVisible() and not unfreeze.isVisible()


def test_devices_are_listed(panel) -> None:
    names = panel.device_names()
    assert names[0] == "auto" and "cpu" in names
    panel.set_config(TrainConfig(device="cuda:7"))  # saved elsewhere: kept, marked missing
    assert panel.config().device == "cuda:7"


def test_start_emits_the_config_and_invalid_forms_explain(qtbot, panel) -> None:
    child(panel, "epochsSpinBox").setValue(3)
    with qtbot.waitSignal(panel.startRequested) as blocker:
        qtbot.mouseClick(child(panel, "startButton"), Qt.MouseButton.LeftButton)
    config = blocker.args[0]
    assert isinstance(config, TrainConfig) and config.epochs == 3

    child(panel, "imageSizeSpinBox").setValue(4)  # TrainConfig wants at least 8 pixels
    with qtbot.assertNotEmitted(panel.startRequested):
        qtbot.mouseClick(child(panel, "startButton"), Qt.MouseButton.LeftButton)
    error = child(panel, "trainingFormError")
    assert not error.isHidden() and "image_size" in error.text()


def test_set_running_toggles_buttons_and_form(qtbot, panel) -> None:
    start, stop = child(panel, "startButton"), child(panel, "stopButton")
    assert start.isEnabled() and not stop.isEnabled()
    panel.set_running(True)
    assert not start.isEnabled() and stop.isEnabled()
    assert not child(panel, "epochsSpinBox").isEnabled()
    with qtbot.waitSignal(panel.stopRequested):
        qtbot.mouseClick(stop, Qt.MouseButton.LeftButton)
    assert not stop.isEnabled()  # pressed once; the run winds down
    panel.set_running(False)
    assert start.isEnabled() and not stop.isEnabled()
    assert child(panel, "epochsSpinBox").isEnabled()


def _run_events() -> list[object]:
    events: list[object] = [
        RunStarted(("a", "b"), train_size=80, val_size=20, device="cpu (4 threads)", features_cached=True,
                   epochs=2, steps_per_epoch=4, start_epoch=1, run_dir="/tmp/run-x"),
        Note("batch size lowered to 16"),
        Progress("caching features", 50, 100),
        Progress("caching features", 100, 100),
    ]
    gs = 0
    for epoch in (1, 2):
        for step in (2, 4):
            gs = (epoch - 1) * 4 + step
            events.append(StepMetrics(epoch, step, 4, gs, loss=1.0 / epoch, lr=1e-3, images_per_second=640.0))
        events.append(EpochMetrics(epoch, 2, 0.9 / epoch, 0.6 + 0.1 * epoch, 0.8 / epoch, 0.7 + 0.1 * epoch,
                                   1e-3, 700.0, 1.5, 1.5 * (2 - epoch), is_best=True))
    events.append(RunFinished("completed", "trained 2 epochs; best val accuracy 90.0% at epoch 2", 2, 0.9,
                              "/tmp/run-x", saved_epochs=2))
    return events


def test_events_drive_progress_labels_and_status(panel) -> None:
    panel.set_running(True)
    assert panel.progress_value() == 0
    events = _run_events()
    seen: list[int] = []
    for event in events:
        panel.add_event(event)
        seen.append(panel.progress_value())
        if isinstance(event, Progress) and event.done == 50:
            assert "Caching features: 50 / 100" in panel.status_text()
            assert "features cached" in panel.status_text()
        if isinstance(event, StepMetrics) and event.global_step == 2:
            assert panel.progress_value() == 25
            assert child(panel, "epochLabel").text() == "1 / 2"
            assert child(panel, "stepLabel").text() == "2 / 4 in this epoch · 2 of 8"  # the plot's axis is the 2nd
            assert child(panel, "lossLabel").text() == "1"
            assert "640" in child(panel, "speedLabel").text()
        if isinstance(event, EpochMetrics) and event.epoch == 1:
            assert panel.progress_value() == 50
            assert child(panel, "stepLabel").text() == "4 / 4 in this epoch · 4 of 8"
            assert "80.0%" in child(panel, "valLabel").text()
            assert child(panel, "etaLabel").text() == "2 s"
    assert seen == sorted(seen)  # never goes backwards
    assert panel.progress_value() == 100
    assert "Finished" in panel.status_text() and "best val accuracy 90.0%" in panel.status_text()
    assert "/tmp/run-x" in panel.status_text()
    assert panel.notes() == ["batch size lowered to 16"]
    panel.set_running(False)
    assert panel.progress_value() == 100


def test_stopped_and_failed_runs_keep_their_progress(panel) -> None:
    panel.set_running(True)
    for event in _run_events()[:5]:  # up to step 2 of 4 in epoch 1 of 2
        panel.add_event(event)
    panel.add_event(RunFinished("stopped", "stopped in epoch 1", None, None, None))
    assert panel.progress_value() == 25
    assert "Stopped" in panel.status_text()
    panel.set_running(False)  # as the window does when a run's job has ended
    panel.set_running(True)  # next run starts from scratch
    assert panel.progress_value() == 0
    panel.add_event(RunFinished("failed", "CUDA out of memory <lower the batch size>", None, None, None))
    assert "Failed" in panel.status_text() and "&lt;lower" in panel.status_text()


def test_saying_running_again_keeps_the_runs_readout(panel) -> None:
    """The window marks the panel running twice as a run starts (its page first, then every
    page); the second must not wipe what the run has shown by then."""
    panel.set_running(True)
    for event in _run_events()[:5]:  # up to step 2 of 4 in epoch 1 of 2
        panel.add_event(event)
    panel.set_running(True)
    assert panel.progress_value() == 25
    assert child(panel, "stepLabel").text() == "2 / 4 in this epoch · 2 of 8"


def test_learning_rate_box_and_durations(qtbot) -> None:
    box = LearningRateSpinBox()
    qtbot.addWidget(box)
    box.setValue(1e-3)
    assert box.text() == "1e-3"
    box.stepBy(1)
    assert box.value() == pytest.approx(2e-3)
    box.stepBy(-2)
    assert box.value() == pytest.approx(5e-4)
    assert box.valueFromText("3e-4") == pytest.approx(3e-4)
    assert format_duration(45) == "45 s" and format_duration(185) == "3 min 05 s"
    assert format_duration(float("nan")) == "—"


def test_interactive_widgets_are_named(panel) -> None:
    for name in ("epochsSpinBox", "batchSizeSpinBox", "learningRateSpinBox", "freezeComboBox",
                 "unfreezeAfterSpinBox", "lastKSpinBox", "augmentComboBox", "imageSizeSpinBox",
                 "deviceComboBox", "precisionComboBox", "workersSpinBox", "seedSpinBox",
                 "patienceSpinBox", "moreSettingsToggle", "startButton", "stopButton"):
        assert child(panel, name).accessibleName(), name


def test_the_feature_pass_shows_its_rate_and_time_left(panel) -> None:
    clock = iter(range(100, 200))  # one second between events
    panel.clock = lambda: float(next(clock))
    panel.set_running(True)
    panel.add_event(_run_events()[0])  # RunStarted
    for done in (0, 100, 200):
        panel.add_event(Progress("caching features", done, 1000))
    assert child(panel, "speedLabel").text() == "100 images/s"
    assert child(panel, "etaLabel").text() == "≈ 8 s"


def test_the_speed_readout_is_smoothed(panel) -> None:
    panel.set_running(True)
    for i, rate in enumerate((4000.0, 30000.0), start=1):
        panel.add_event(StepMetrics(1, i, 4, i, loss=1.0, lr=1e-3, images_per_second=rate))
    shown = float(child(panel, "speedLabel").text().split()[0].replace(",", ""))
    assert 4000 < shown < 10000  # one fast step does not throw the readout to 30,000


def test_long_figures_and_paths_do_not_widen_the_page(panel) -> None:
    """Under X at 1024×768 the streamed validation text and the run folder's path made the
    window wider than the screen: the readout is two figures a row, the path is shortened."""
    panel.resize(600, 500)
    panel.show()
    panel.set_running(True)
    panel.add_event(_run_events()[0])  # RunStarted
    before = panel.minimumSizeHint().width()
    panel.add_event(CacheValidation(cached=345, total=1438, train_loss=0.4, val_loss=0.5, val_accuracy=0.875, seconds=1.0))
    assert "cached)" in child(panel, "valLabel").text()
    assert panel.minimumSizeHint().width() <= before
    deep = "/home/someone/" + "/".join(f"folder-{i:02d}" for i in range(20)) + "/runs/2026-12-02_13-45-01"
    panel.add_event(RunFinished("completed", "trained 1 epoch", 1, 0.9, deep, saved_epochs=1))
    assert "…/runs/2026-12-02_13-45-01" in panel.status_text() and deep not in panel.status_text()
    assert deep in child(panel, "trainingStatusLabel").toolTip()
    assert panel.minimumSizeHint().width() <= before


def test_the_folded_settings_summary_ends_in_an_ellipsis_when_cut(qtbot) -> None:
    from headswap_gui.gui.elided_label import ElidedLabel

    label = ElidedLabel()
    qtbot.addWidget(label)
    label.show()
    full = "5 epochs · batch 32 · lr 0.01 · head only · 64 px · Automatic"
    label.resize(label.fontMetrics().horizontalAdvance(full) + 20, 20)
    label.set_full_text(full)
    assert label.text() == full and label.toolTip() == ""
    label.resize(label.fontMetrics().horizontalAdvance(full) // 2, 20)
    assert label.text().endswith("…") and len(label.text()) < len(full)
    assert label.toolTip() == full and label.full_text() == full
    assert label.minimumSizeHint().width() < label.fontMetrics().horizontalAdvance(full) // 2  # it never widens the page
