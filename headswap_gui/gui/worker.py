"""Run a core generator on a worker thread and hand its events to the GUI thread.

Core work (training, feature caching, inspection) is a generator that yields small frozen
events and watches a ``threading.Event`` for a cooperative stop. :class:`GeneratorRunner`
drives such a generator on a ``QThread`` and re-emits every event as a queued signal, so slots
run on the GUI thread and never see a widget from the worker.

Why not superqt's ``GeneratorWorker`` directly: after ``quit()`` it leaves the generator
unclosed, so a DataLoader's ``finally`` would run later on whatever thread collects the
generator. Here the generator is created, iterated *and closed* on the worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QThread, Signal, Slot

from headswap_gui.core.errors import HeadswapError
from headswap_gui.gui.jobs import ModelLease, leased
from headswap_gui.gui.messages import explain

__all__ = ["GeneratorFactory", "GeneratorRunner", "running_runners", "start_runner", "stop_all_runners"]

_log = logging.getLogger(__name__)

GeneratorFactory = Callable[[threading.Event], Iterator[object]]
"""Builds the generator; called on the worker thread with the stop flag it must watch."""

# Strong references to every runner between start() and finished: keeps the runner and its
# QThread alive even if the caller drops them, and lets tests detect leaked threads.
_running: set[GeneratorRunner] = set()
_running_lock = threading.Lock()


def running_runners() -> list[GeneratorRunner]:
    """Runners started and not yet finished (tests fail when one is left behind)."""
    with _running_lock:
        return list(_running)


def stop_all_runners(timeout_ms: int = 5000) -> bool:
    """Ask every running runner to stop and wait for each; for window close / ``aboutToQuit``.

    Returns True when all of them finished within ``timeout_ms`` (each gets the full budget).
    """
    runners = running_runners()
    for runner in runners:
        runner.request_stop()
    return all([runner.wait(timeout_ms) for runner in runners])


class _GeneratorThread(QThread):
    """The QThread that creates, iterates and closes the generator.

    It lives on the GUI thread (as QThread objects do) while ``run`` executes on the new
    thread, so its signals reach GUI-thread receivers through queued connections, in order.
    """

    eventEmitted = Signal(object)
    failed = Signal(str)

    def __init__(
        self,
        factory: GeneratorFactory,
        stop: threading.Event,
        stop_grace_s: float,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._factory = factory
        self._stop = stop
        self._stop_grace_s = stop_grace_s
        self.worker_ident: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:  # noqa: D401 - Qt override, runs on the worker thread
        self.worker_ident = threading.get_ident()
        gen: Iterator[object] | None = None
        stop_seen_at: float | None = None
        try:
            gen = iter(self._factory(self._stop))
            for event in gen:
                self.eventEmitted.emit(event)
                if self._stop.is_set():
                    # The generator should notice the flag itself and yield its closing events
                    # (e.g. RunFinished("stopped")); give it a grace period, then close it.
                    now = time.monotonic()
                    stop_seen_at = now if stop_seen_at is None else stop_seen_at
                    if now - stop_seen_at >= self._stop_grace_s:
                        break
        except BaseException as exc:  # noqa: BLE001 - reported to the GUI, never re-raised here
            if not isinstance(exc, HeadswapError):
                _log.error("worker generator failed", exc_info=exc)
            self.error = exc  # set before the signal: the GUI thread reads it in the slot
            self.failed.emit(explain(exc))
        finally:
            if gen is not None:
                close = getattr(gen, "close", None)
                if close is not None:
                    try:
                        close()  # runs the generator's finally on *this* thread
                    except BaseException as exc:  # noqa: BLE001
                        _log.error("closing the worker generator failed", exc_info=exc)
                        self.failed.emit(explain(exc))
            # Drop references on this thread so heavy objects die here, not on the GUI thread.
            gen = None
            self._factory = None  # type: ignore[assignment]


class GeneratorRunner(QObject):
    """Drives one core generator on a worker thread; events arrive on the GUI thread.

    Signals, all delivered on the thread that owns the runner (the GUI thread):

    * ``eventEmitted(object)`` – each yielded event, in order;
    * ``failed(str)`` – the generator raised; the text is :func:`messages.explain`'s
      sentences for the user, the exception itself is :attr:`error` then, for branching on
      its type (a non-HeadswapError is logged with its traceback);
    * ``finished()`` – always last, once the worker thread has fully ended.

    A runner runs once; make a new one for the next job. A running runner keeps itself alive
    (see :func:`running_runners`); if it has a Qt parent, ``request_stop()`` and ``wait()``
    before that parent is destroyed, as the window does on close.
    """

    eventEmitted = Signal(object)
    failed = Signal(str)
    finished = Signal()

    def __init__(
        self,
        factory: GeneratorFactory,
        parent: QObject | None = None,
        *,
        stop_grace_s: float = 5.0,
    ) -> None:
        """``stop_grace_s``: after ``request_stop`` the generator may keep yielding (its own
        wind-down events) this long before the runner stops pulling and closes it."""
        super().__init__(parent)
        self._factory: GeneratorFactory | None = factory
        self._stop = threading.Event()
        self._stop_grace_s = stop_grace_s
        self._thread: _GeneratorThread | None = None
        self._running = False
        self._done = False
        self.worker_thread_ident: int | None = None

    # -- public API -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the generator on a new thread. A runner can be started only once."""
        if self._thread is not None or self._factory is None:
            raise RuntimeError("GeneratorRunner.start() called twice; make a new runner")
        thread = _GeneratorThread(self._factory, self._stop, self._stop_grace_s)
        self._factory = None
        thread.setObjectName("GeneratorRunnerThread")
        thread.eventEmitted.connect(self._on_eventEmitted)
        thread.failed.connect(self._on_failed)
        thread.finished.connect(self._on_finished)
        self._thread = thread
        self._running = True
        with _running_lock:
            _running.add(self)
        thread.start()

    def request_stop(self) -> None:
        """Ask the generator to stop at its next check. Cooperative: the thread is never killed."""
        self._stop.set()

    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def is_running(self) -> bool:
        """True from ``start()`` until ``finished`` has been emitted."""
        return self._running

    def wait(self, timeout_ms: int = 5000) -> bool:
        """Block until the worker thread ends; True if it did within ``timeout_ms``.

        Called on the GUI thread (e.g. at window close, when the event loop may not run
        again), it also delivers the pending events and emits ``finished`` right away.
        """
        if self._thread is None:
            return True
        if not self._thread.wait(max(0, int(timeout_ms))):
            return False
        if QThread.currentThread() is self.thread():
            # Deliver queued eventEmitted/failed first so finished stays last.
            QCoreApplication.sendPostedEvents(self, QEvent.Type.MetaCall.value)
            self._finish()
        return True

    # -- slots (GUI thread) -----------------------------------------------------------------

    @Slot(object)
    def _on_eventEmitted(self, event: object) -> None:
        if not self._done:
            self.eventEmitted.emit(event)

    @property
    def error(self) -> BaseException | None:
        """The exception behind the last ``failed`` (None before one)."""
        return self._thread.error if self._thread is not None else None

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        if not self._done:
            self.failed.emit(message)

    @Slot()
    def _on_finished(self) -> None:
        self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        thread = self._thread
        assert thread is not None
        # QThread.finished is emitted just before the thread really ends; wait() makes sure it
        # has, so no "QThread: Destroyed while thread is still running" later.
        thread.wait()
        self.worker_thread_ident = thread.worker_ident
        self._done = True
        self._running = False
        with _running_lock:
            _running.discard(self)
        self.finished.emit()


def start_runner(
    factory: GeneratorFactory,
    on_event: Callable[[object], None],
    on_failed: Callable[[str], None],
    on_finished: Callable[[], None],
    *,
    lease: ModelLease | None = None,
    lease_as: str = "",
) -> GeneratorRunner:
    """Start a page's own job (predictions, heatmaps: the window's JobManager runs the others),
    under ``lease`` as ``lease_as`` where the page was given the window's lease. No stop grace:
    a page drops a stopped job's late events, so its generator is closed at the next one."""
    if lease is not None:
        factory = leased(lease, lease_as, factory)
    runner = GeneratorRunner(factory, stop_grace_s=0.0)
    runner.eventEmitted.connect(on_event)
    runner.failed.connect(on_failed)
    runner.finished.connect(on_finished)
    runner.start()
    return runner
