"""The window's one owner of background jobs.

Every long job of the window (warm-up, demo data, load, train, evaluate, export) is started
here under a key. The manager knows which runner is the current one for each key, gives the
model lease to the jobs that touch the model, and decides what a second job with the same key
means:

* ``"replace"`` (the default): the running job is asked to stop and the new one starts now;
* ``"after"``: the running job is asked to stop and the new one starts when it has ended.
  Loads use this: a second Open while a load runs never has two models being built at once,
  and a third Open during the wait replaces the second, so the last request wins.

Closing asks every job of the process to stop first and then waits for all of them against
one deadline, so N jobs take as long as the slowest, not the sum.
"""

from __future__ import annotations

import time
from typing import Literal

from PySide6.QtCore import QObject, Signal, Slot

from headswap_gui.gui.jobs import GeneratorFactory, ModelLease, leased
from headswap_gui.gui.worker import GeneratorRunner, running_runners

__all__ = ["JobManager"]

Overlap = Literal["replace", "after"]


class JobManager(QObject):
    """Signals: ``jobStarted(str)`` (a job's thread started; its key), ``jobsChanged()`` (a job
    was queued, started or ended)."""

    jobStarted = Signal(str)
    jobsChanged = Signal()

    def __init__(self, parent: QObject | None = None, lease: ModelLease | None = None) -> None:
        super().__init__(parent)
        self.lease = lease if lease is not None else ModelLease()
        self._current: dict[str, GeneratorRunner] = {}
        # key -> (runner waiting to start, the running job it waits for)
        self._queued: dict[str, tuple[GeneratorRunner, GeneratorRunner]] = {}
        self._live: list[GeneratorRunner] = []  # started here and not yet ended, current or not

    def start(
        self,
        key: str,
        factory: GeneratorFactory,
        *,
        lease_as: str | None = None,
        overlap: Overlap = "replace",
        stop_grace_s: float = 5.0,
    ) -> GeneratorRunner:
        """A runner for ``factory`` under ``key``; connect to its signals right away (a queued
        runner starts later). ``lease_as`` names the job in the model lease it must hold."""
        if lease_as is not None:
            factory = leased(self.lease, lease_as, factory)
        runner = GeneratorRunner(factory, stop_grace_s=stop_grace_s)
        runner.setObjectName(f"{key}Runner")
        runner.finished.connect(self._on_runner_finished)
        previous = self._current.get(key)
        self._current[key] = runner
        superseded = self._queued.pop(key, None)
        if superseded is not None:
            superseded[0].deleteLater()  # never started: nothing to wait for
            previous = superseded[1]  # still the job to wait for
        if previous is not None and previous.is_running():
            previous.request_stop()
            if overlap == "after":
                self._queued[key] = (runner, previous)
                self.jobsChanged.emit()
                return runner
        self._launch(key, runner)
        return runner

    def _launch(self, key: str, runner: GeneratorRunner) -> None:
        self._live.append(runner)
        runner.start()
        self.jobStarted.emit(key)
        self.jobsChanged.emit()

    @Slot()
    def _on_runner_finished(self) -> None:
        ended = self.sender()
        if ended in self._live:
            self._live.remove(ended)
        for key, (queued, awaited) in list(self._queued.items()):
            if awaited is ended:
                del self._queued[key]
                self._launch(key, queued)
        if isinstance(ended, GeneratorRunner) and ended not in self._current.values():
            ended.deleteLater()
        self.jobsChanged.emit()

    # -- questions ----------------------------------------------------------------------------

    def is_running(self, key: str) -> bool:
        """Whether a job under ``key`` runs or waits to run."""
        runner = self._current.get(key)
        return runner is not None and (runner.is_running() or key in self._queued)

    def is_current(self, key: str, runner: object) -> bool:
        """Whether ``runner`` (usually ``self.sender()``) is the latest job under ``key``."""
        return runner is not None and runner is self._current.get(key)

    def runner(self, key: str) -> GeneratorRunner | None:
        return self._current.get(key)

    def runners(self) -> dict[str, GeneratorRunner]:
        return dict(self._current)

    # -- stopping -----------------------------------------------------------------------------

    def stop(self, key: str) -> bool:
        """Ask the job under ``key`` to stop; False when none runs."""
        runner = self._current.get(key)
        if runner is None or not runner.is_running():
            return False
        runner.request_stop()
        return True

    def stop_all(self, timeout_ms: int) -> bool:
        """Stop every job of the process at once, then wait for the window's jobs together;
        True when all ended within ``timeout_ms`` in total."""
        for runner in running_runners():
            runner.request_stop()
        for queued, _awaited in self._queued.values():
            queued.deleteLater()
        self._queued.clear()
        deadline = time.monotonic() + timeout_ms / 1000
        ok = True
        for runner in list(self._live):
            left_ms = max(0, int((deadline - time.monotonic()) * 1000))
            ok = runner.wait(left_ms) and ok
        return ok
