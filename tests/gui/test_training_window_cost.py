"""What a run costs the window's GUI thread: the layer tree is updated in place (no reset) when
a run starts and ends, the Train page's readout is throttled, the plots still end up with
every point once the run has finished, and the Train page comes up in its own turn of the
event loop, before the run begins."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QEvent, QObject

from headswap_gui.core import training
from headswap_gui.core.events import StepMetrics
from headswap_gui.gui.layer_tree_model import TRAINABLE_COLUMN
from headswap_gui.gui.main_window import MainWindow

TINY = "timm:test_efficientnet"  # 356 k parameters, builds in milliseconds
LOAD_MS = 60_000


def load_model_and_images(qtbot, window: MainWindow, folder: Path) -> None:
    with qtbot.waitSignal(window.modelLoaded, timeout=LOAD_MS):
        assert window.load_model(TINY)
    qtbot.waitUntil(lambda: not window.is_loading(), timeout=5000)
    with qtbot.waitSignal(window.data_panel.datasetChanged, timeout=LOAD_MS):
        window.open_data_folder(str(folder))


def short_run(epochs: int = 2) -> training.TrainConfig:
    """Head only (the backbone is frozen as the run starts), a few fast steps on the CPU, each
    one reported (a flood of step events, faster than the readout shows them)."""
    return training.TrainConfig(
        epochs=epochs, batch_size=1, image_size=32, device="cpu", val_fraction=0.34, warmup_epochs=0,
        cache_features="off", max_step_events_per_second=1000.0,
    )


def train(qtbot, window: MainWindow, config: training.TrainConfig) -> object:
    with qtbot.waitSignal(window.trainingFinished, timeout=LOAD_MS) as finished:
        assert window.start_training(config)
    assert finished.args[0].reason == "completed"
    return finished.args[0]


def test_a_run_updates_the_layer_tree_in_place(qtbot, window: MainWindow, image_folder: Path) -> None:
    load_model_and_images(qtbot, window, image_folder)
    panel = window.model_panel
    model = panel.tree_model
    resets: list[str] = []
    frozen_rows: list[str] = []
    model.modelReset.connect(lambda: resets.append("reset"))
    model.dataChanged.connect(lambda top, _bottom, _roles: frozen_rows.append(top.data()))
    assert model.root_record().find("conv_stem").trainable_params > 0
    train(qtbot, window, short_run(epochs=1))
    assert resets == []  # the head swap, the frozen backbone, the trained head: all in place
    assert frozen_rows  # … through dataChanged for the rows whose counts changed
    stem = panel.proxy_index_for_path("conv_stem")
    assert stem.siblingAtColumn(TRAINABLE_COLUMN).data() == "0"  # the frozen backbone shows
    head = panel.proxy_index_for_path("classifier")
    assert panel.tree_view.currentIndex() == head  # the head swap still selects the new head


def test_the_final_points_appear_after_the_run_finishes(qtbot, window: MainWindow, image_folder: Path) -> None:
    load_model_and_images(qtbot, window, image_folder)
    shown: list[tuple[float, object]] = []
    panel_add = window.training_panel.add_event

    def record(event: object) -> None:
        shown.append((time.monotonic(), event))
        panel_add(event)

    window.training_panel.add_event = record
    plots = window.plots_view
    finished = train(qtbot, window, short_run(epochs=3))
    assert plots.step_count() > 0 and plots.epoch_count() == 3

    def every_point_drawn() -> bool:
        raw, _ = plots._raw_curve.getData()
        val, _ = plots._val_acc_curve.getData()
        return raw is not None and len(raw) == plots.step_count() and val is not None and len(val) == 3

    qtbot.waitUntil(every_point_drawn, timeout=5000)
    assert plots.best_epoch() == finished.best_epoch
    # The readout: a step update comes a quarter second after the last one shown at the
    # earliest, unless it is shown at once ahead of the epoch or the end that follows it; the
    # plots got every step, the readout fewer, and it ends on the run's last step.
    kinds = [type(e) for _, e in shown]
    for i in range(len(shown) - 1):
        ahead_of_another_event = i + 2 < len(shown) and kinds[i + 2] is not StepMetrics
        if kinds[i] is StepMetrics and kinds[i + 1] is StepMetrics and not ahead_of_another_event:
            assert shown[i + 1][0] - shown[i][0] >= 0.24
    steps = [e for _, e in shown if isinstance(e, StepMetrics)]
    assert len(steps) < plots.step_count()
    assert steps[-1].global_step == plots.step_count()
    assert window.training_panel.progress_value() == 100


class _PaintLog(QObject):
    """Appends ``"paint"`` to ``log`` for every paint of the widgets it watches."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.Paint:
            self.log.append("paint")
        return False


def test_the_train_page_is_painted_after_start_returns_and_before_the_run_begins(
    qtbot, window: MainWindow, image_folder: Path
) -> None:
    """start_training does the head swap and hands the model over; the Train page's layout
    and paint come in a later turn of the event loop (one call that did both froze the
    window for 90–130 ms), and fit only starts once the page is on screen."""
    load_model_and_images(qtbot, window, image_folder)
    window.show_page("data")
    qtbot.waitUntil(lambda: window.data_panel.isVisible(), timeout=5000)
    log: list[str] = []
    painted = _PaintLog(log)
    window.plots_view._graphics.viewport().installEventFilter(painted)
    with qtbot.waitSignal(window.trainingFinished, timeout=LOAD_MS):
        assert window.start_training(short_run(epochs=1))
        assert log == [] and window.tabs.currentWidget() is not window.train_page  # not yet
        log.append("returned")
        window.jobs.runner("train").eventEmitted.connect(lambda event: log.append(type(event).__name__))
    assert log[0] == "returned" and log[1] == "paint"  # the page, painted before fit's first event
    assert log.index("RunStarted") > 1
    assert window.training_panel.is_running() is False and not window.training_panel.settings_expanded()
