"""Training and evaluating in the window: the run's job, its events, and the results after it.

``start`` checks the state, swaps the head when the class count differs (one undoable step,
seeded like the CLI), picks a run folder and starts ``core.training.fit`` as the ``"train"``
job holding the model lease. Events go to the plots as they come (they buffer every point and
redraw at most twice a second) and to the Train page's progress readout at most twice a
second: a step or stage update that a newer one overtakes within that time is dropped, since
its labels would be overwritten before anyone read them, and every label set is GUI-thread
work that competes with the training thread for the GIL. The rare events (the start, notes,
epochs, the end) go through at once, after the update they follow. When the run ends with a
kept epoch, the model's version moves on (its weights are the best epoch's) and an ``"eval"``
job computes the validation results of that version, which go into the state and the Results
page.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QTimer, Signal, Slot

from headswap_gui.gui.job_events import LoadStage, evaluation_events
from headswap_gui.gui.state import Evaluation

if TYPE_CHECKING:
    from headswap_gui.gui.main_window import MainWindow

__all__ = ["TrainingController"]

_PANEL_INTERVAL_S = 0.5  # the progress readout changes at most twice a second
# How long a run's worker waits for the window to finish the run's start on screen before it
# calls ``fit`` (see ``start``): bounded, so a window that never gets back to its event loop
# cannot hold the run.
_SCREEN_FIRST_S = 1.0
_SHOW_PAGE_AFTER_MS = 1  # the Train page comes up this long after ``start`` returns (see there)


class TrainingController(QObject):
    """Signals: ``trainingStarted()``, ``trainingFinished(object)`` (the RunFinished event, or
    None when the run ended without one), ``resultsReady(object)`` (an :class:`Evaluation`)."""

    trainingStarted = Signal()
    trainingFinished = Signal(object)
    resultsReady = Signal(object)

    def __init__(self, window: MainWindow, runs_root: Path | None) -> None:
        super().__init__(window)
        self._window = window
        self._runs_root = runs_root  # None: the runs folder the CLI lists too
        self._config: Any = None  # what the current run (or evaluation) uses
        self._dataset: Any = None
        self._finished: Any = None  # the RunFinished of the current run
        self._panel_pending: Any = None  # the newest step/stage update not yet shown
        self._screen_done = threading.Event()  # set: the run's worker may call fit (see start)
        self._panel_shown_at = -float("inf")  # time.monotonic() of the last update shown
        self._panel_timer = QTimer(self)
        self._panel_timer.setSingleShot(True)
        self._panel_timer.timeout.connect(self._on_panel_timer_timeout)

    @staticmethod
    def tr(text: str) -> str:  # noqa: D102 - Qt's translation hook
        return QCoreApplication.translate("TrainingController", text)

    # -- training -----------------------------------------------------------------------------

    def start(self, config: Any, *, run_dir: Path | None = None, resume: bool = False) -> bool:
        """Train the loaded model on the loaded image folder with ``config`` (a TrainConfig);
        ``resume`` continues the run in ``run_dir`` (the loaded model must be that run's)."""
        window = self._window
        controller = window.controller
        if window.is_training() or window.is_closing():
            return False
        loaded = controller.loaded
        dataset = window.dataset()
        if loaded is None:
            window.show_error(self.tr("No model"), self.tr("Load a model first (the list on the left, or File ▸ Open model)."))
            return False
        if dataset is None:
            window.show_error(self.tr("No images"), self.tr("Choose an image folder first (the Data page, or drop a folder on the window)."))
            return False
        if window.is_loading() or window.is_model_busy():
            window.statusBar().showMessage(self.tr("Wait for the current job to finish."), 5000)
            return False
        if not controller.heads:
            window.show_error(self.tr("No head"), self.tr("No classifier head is known; right-click a layer → Use as head."))
            return False
        names = tuple(dataset.class_names)
        wrong = [] if resume else [h for h in controller.heads if h.out_features != len(names)]
        if wrong:  # a resumed run keeps its own head; fit refuses a folder of other classes
            if not self._fit_head_to(names, wrong[0].out_features, config.seed):
                return False
        elif loaded.class_names != names:
            loaded.class_names = names
        if run_dir is None:
            from headswap_gui.core.run_index import new_run_folder

            run_dir = new_run_folder(self._runs_root)
        window.settings.set_last_hyperparameters(config.to_dict())
        if window.training_panel is not None:
            window.training_panel.set_config(config)  # the form (and its summary) shows what runs
        self._config, self._dataset, self._finished = config, dataset, None
        self._panel_pending = None  # an update of an earlier run is not this one's
        if window.plots_view is not None and not resume:  # a resumed run continues its restored curves
            window.plots_view.clear()
        # The last results stay until the run has a better answer; they say they are older.
        controller.bump_version("a new run started")
        heads = controller.heads
        # ``fit``'s first fraction of a second (the meta-device size check, moving the model)
        # is pure Python that holds the GIL; the Train page's first layout and paint (~40 ms
        # of Python-heavy GUI work) would then wait for the interpreter at every Qt call and
        # freeze the window for 100–200 ms (bench_gui_latency). So the worker starts (and owns
        # the model) now, but calls ``fit`` only once the page is on screen.
        screen_done = self._screen_done = threading.Event()

        def factory(stop: threading.Event) -> Iterator[object]:
            from headswap_gui.core import training

            screen_done.wait(_SCREEN_FIRST_S)
            return training.fit(loaded, dataset, config, run_dir, stop=stop, heads=heads, resume=resume)

        runner = window.jobs.start("train", factory, lease_as="train")
        runner.eventEmitted.connect(self._on_train_eventEmitted)
        runner.failed.connect(self._on_train_failed)
        runner.finished.connect(self._on_train_finished)
        window.set_training_ui(True)
        self.trainingStarted.emit()
        # The page comes up in a later turn of the event loop, after the window has painted
        # what this call changed (the head swap's layer tree) and handled waiting input: one
        # call that did both froze the window for 90–130 ms. A timer, not a zero-delay call,
        # which Qt delivers before any waiting timer or input.
        QTimer.singleShot(_SHOW_PAGE_AFTER_MS, self._on_show_train_page)
        return True

    @Slot()
    def _on_show_train_page(self) -> None:
        """Fold the settings, bring the Train page up and lay it out and paint it at once,
        then let the run's worker call ``fit``: one paint of the new layout, not one per
        changed label, and not shared with ``fit``'s Python-heavy start."""
        window = self._window
        if window.is_training() and window.training_panel is not None:
            window.setUpdatesEnabled(False)
            try:
                window.training_panel.set_running(True)
                window.show_page("train")
            finally:
                window.setUpdatesEnabled(True)
            QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest.value)
            window.repaint()
        self._screen_done.set()

    def _fit_head_to(self, names: tuple[str, ...], old: int, seed: int) -> bool:
        from headswap_gui.core.heads import HeadSpec

        n = len(names)
        window = self._window
        if not window.replace_head(
            HeadSpec(), n, names, text=self.tr("Replace head for training (Linear, {n} classes)").format(n=n), seed=seed,
        ):
            return False
        window.statusBar().showMessage(
            self.tr("The head had {old} outputs; it was replaced with a Linear head for the {n} classes "
                    "(Edit ▸ Undo puts it back, Ctrl+H chooses another design).").format(old=old, n=n),
            20000,
        )
        return True

    def stop(self) -> None:
        if self._window.jobs.stop("train"):
            self._window.statusBar().showMessage(self.tr("Stopping after the current step…"))

    def _is_current(self, key: str) -> bool:
        return self._window.jobs.is_current(key, self.sender())

    @Slot(object)
    def _on_train_eventEmitted(self, event: object) -> None:
        if not self._is_current("train"):
            return
        from headswap_gui.core.events import Note, RunFinished, RunStarted

        window = self._window
        if window.training_panel is not None:
            self._show_on_panel(event)
        if window.plots_view is not None:
            window.plots_view.add_event(event)
        if isinstance(event, RunStarted):
            window.state.update(run_dir=event.run_dir)
            window.runs_panel.refresh()
            if event.run_dir:
                window.runs_panel.select_folder(event.run_dir)
            window.set_device_text(event.device)
            window.controller.refresh_tree()  # the backbone is frozen now: show it
            window.statusBar().showMessage(
                self.tr("Training on {device}: {train} training and {val} validation images.").format(
                    device=event.device, train=f"{event.train_size:,}", val=f"{event.val_size:,}"
                ),
                10000,
            )
        elif isinstance(event, Note):
            window.controller.refresh_tree()
            window.statusBar().showMessage(event.message, 10000)
        elif isinstance(event, RunFinished):
            self._finished = event
            if event.run_dir:
                window.state.update(run_dir=event.run_dir)
            window.statusBar().showMessage(event.message, 20000)

    def _show_on_panel(self, event: object) -> None:
        """Hand ``event`` to the Train page's readout, throttled (see the module docstring):
        a step or stage update is shown now if the last was shown long enough ago, else the
        newest one waits for the timer; any other event first shows the update it follows."""
        from headswap_gui.core.events import Progress, StepMetrics

        pending = self._panel_pending
        if not isinstance(event, (StepMetrics, Progress)):
            self._flush_panel()
            self._window.training_panel.add_event(event)
            return
        same_kind = type(pending) is type(event) and getattr(pending, "stage", None) == getattr(event, "stage", None)
        if pending is not None and not same_kind:
            self._flush_panel()  # another kind of update: the last of the old kind is shown first
        self._panel_pending = event
        wait = self._panel_shown_at + _PANEL_INTERVAL_S - time.monotonic()
        if wait <= 0:
            self._flush_panel()
        elif not self._panel_timer.isActive():
            self._panel_timer.start(int(wait * 1000) + 1)

    def _flush_panel(self) -> None:
        """Show the waiting step/stage update now (if any)."""
        self._panel_timer.stop()
        pending, self._panel_pending = self._panel_pending, None
        if pending is not None and self._window.training_panel is not None:
            self._panel_shown_at = time.monotonic()
            self._window.training_panel.add_event(pending)

    @Slot()
    def _on_panel_timer_timeout(self) -> None:
        self._flush_panel()

    @Slot(str)
    def _on_train_failed(self, message: str) -> None:
        window = self._window
        if self._is_current("train") and not window.is_closing():
            window.show_error(self.tr("Training stopped with an error"), message)

    @Slot()
    def _on_train_finished(self) -> None:
        if not self._is_current("train"):
            return
        self._flush_panel()  # a run that ended without RunFinished still shows its last step
        window = self._window
        controller = window.controller
        if window.training_panel is not None:
            window.training_panel.set_running(False)
        window.set_training_ui(False)
        loaded = controller.loaded
        finished, config = self._finished, self._config
        kept = loaded is not None and finished is not None and finished.best_epoch is not None
        if kept:
            controller.bump_version(f"run {Path(finished.run_dir or '').name} trained it")
            controller.mark_heads_trained()
            if config.image_size and config.image_size != loaded.preprocessing.input_size:
                # The weights now expect the training size; Try it, export and the run folder agree.
                loaded.preprocessing = loaded.preprocessing.with_input_size(config.image_size)
        if loaded is not None:
            controller.refresh_tree()
            window.give_model_to_pages()
        self.trainingFinished.emit(finished)
        if kept and not window.is_closing() and self._dataset is not None:
            self.evaluate(config, self._dataset)

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(self, config: Any, dataset: Any) -> None:
        """Evaluate the model on the validation split off-thread; fills the Results page."""
        window = self._window
        loaded = window.controller.loaded
        if loaded is None:
            return
        self._config, self._dataset = config, dataset  # what the results describe
        runner = window.jobs.start(
            "eval", evaluation_events(loaded, dataset, config, window.controller.version),
            lease_as="evaluate", stop_grace_s=0.0,
        )
        runner.eventEmitted.connect(self._on_eval_eventEmitted)
        runner.failed.connect(self._on_eval_failed)

    @Slot(object)
    def _on_eval_eventEmitted(self, event: object) -> None:
        if not self._is_current("eval"):
            return
        window = self._window
        if isinstance(event, LoadStage):
            window.statusBar().showMessage(event.text, 10000)
        elif isinstance(event, Evaluation):
            window.state.update(evaluation=event)
            if window.results_panel is not None:
                result = event.result
                window.results_panel.set_results(
                    event.class_names, event.paths, result.targets, result.predictions,
                    result.probabilities, result.losses, model_version=event.model_version,
                )
            window.statusBar().showMessage(
                self.tr("Validation accuracy {acc:.1%} on {n} images — see the Results page.").format(
                    acc=event.result.accuracy, n=len(event.paths)
                ),
                15000,
            )
            self.resultsReady.emit(event)

    @Slot(str)
    def _on_eval_failed(self, message: str) -> None:
        if self._is_current("eval") and not self._window.is_closing():
            self._window.show_error(self.tr("Could not evaluate the model"), message)
