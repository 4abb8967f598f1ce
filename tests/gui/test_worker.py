"""GeneratorRunner: ordering, thread affinity, cooperative stop, errors, clean shutdown."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QThread

from headswap_gui.core.errors import DataError
from headswap_gui.core.events import Note
from headswap_gui.gui.messages import INTERNAL_PROBLEM
from headswap_gui.gui.worker import GeneratorRunner, running_runners


class Recorder:
    """Collects what the runner emits, with the thread each slot ran on."""

    def __init__(self, runner: GeneratorRunner) -> None:
        self.events: list[object] = []
        self.event_threads: set[int] = set()
        self.failures: list[str] = []
        self.order: list[str] = []
        runner.eventEmitted.connect(self._on_eventEmitted)
        runner.failed.connect(self._on_failed)
        runner.finished.connect(self._on_finished)

    def _on_eventEmitted(self, event: object) -> None:
        self.events.append(event)
        self.event_threads.add(threading.get_ident())
        self.order.append("event")

    def _on_failed(self, message: str) -> None:
        self.failures.append(message)
        self.order.append("failed")

    def _on_finished(self) -> None:
        self.order.append("finished")


def test_events_arrive_in_order_on_gui_thread(qtbot) -> None:
    gen_threads: list[int] = []

    def factory(stop: threading.Event) -> Iterator[object]:
        gen_threads.append(threading.get_ident())
        for i in range(200):
            yield Note(f"event {i}")

    runner = GeneratorRunner(factory)
    rec = Recorder(runner)
    with qtbot.waitSignal(runner.finished, timeout=5000):
        runner.start()
        assert runner.is_running()

    assert [e.message for e in rec.events] == [f"event {i}" for i in range(200)]
    assert rec.event_threads == {threading.get_ident()}  # slots ran on the GUI thread
    assert gen_threads and gen_threads[0] != threading.get_ident()  # generator did not
    assert rec.order[-1] == "finished" and "failed" not in rec.order
    assert not runner.is_running()
    assert runner not in running_runners()
    assert runner.worker_thread_ident == gen_threads[0]


def test_stop_mid_run_closes_generator_in_worker_thread(qtbot) -> None:
    started = threading.Event()
    finally_threads: list[int] = []
    seen_stop: list[bool] = []

    def factory(stop: threading.Event) -> Iterator[object]:
        try:
            i = 0
            while not stop.is_set():
                started.set()
                yield Note(f"step {i}")
                i += 1
                stop.wait(0.001)  # stands in for a training step
            seen_stop.append(True)
            yield Note("stopped")  # wind-down events still reach the GUI
        finally:
            finally_threads.append(threading.get_ident())

    runner = GeneratorRunner(factory)
    rec = Recorder(runner)
    runner.start()
    qtbot.waitUntil(lambda: len(rec.events) >= 5, timeout=5000)
    with qtbot.waitSignal(runner.finished, timeout=1000):
        runner.request_stop()

    assert seen_stop == [True]
    assert rec.events[-1] == Note("stopped")
    assert finally_threads and finally_threads[0] != threading.get_ident()
    assert finally_threads[0] == runner.worker_thread_ident
    assert not runner.is_running()
    assert runner not in running_runners()


def test_generator_that_ignores_stop_is_closed_after_grace(qtbot) -> None:
    finally_threads: list[int] = []

    def factory(stop: threading.Event) -> Iterator[object]:
        try:
            while True:  # never looks at the flag
                yield Note("tick")
                threading.Event().wait(0.001)
        finally:
            finally_threads.append(threading.get_ident())

    runner = GeneratorRunner(factory, stop_grace_s=0.05)
    rec = Recorder(runner)
    runner.start()
    qtbot.waitUntil(lambda: len(rec.events) >= 3, timeout=5000)
    with qtbot.waitSignal(runner.finished, timeout=2000):
        runner.request_stop()
    assert finally_threads == [runner.worker_thread_ident]
    assert finally_threads[0] != threading.get_ident()


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (DataError("No class folders in /tmp/x; add one folder per class."),
         "No class folders in /tmp/x; add one folder per class."),
        (ValueError("bad value"), INTERNAL_PROBLEM),  # a bug: no class name, details in the log
    ],
)
def test_exception_arrives_as_failed(qtbot, exc: Exception, expected: str) -> None:
    def factory(stop: threading.Event) -> Iterator[object]:
        yield Note("before")
        raise exc

    runner = GeneratorRunner(factory)
    rec = Recorder(runner)
    with qtbot.waitSignal(runner.finished, timeout=5000):
        with qtbot.waitSignal(runner.failed, timeout=5000) as blocker:
            runner.start()
    assert blocker.args == [expected]
    assert rec.events == [Note("before")]
    assert rec.order == ["event", "failed", "finished"]
    assert not runner.is_running()


def test_factory_error_is_reported(qtbot) -> None:
    def factory(stop: threading.Event) -> Iterator[object]:
        raise RuntimeError("could not open the folder")

    runner = GeneratorRunner(factory)
    with qtbot.waitSignals([runner.failed, runner.finished], timeout=5000, order="strict"):
        runner.start()
    assert not runner.is_running()


def test_wait_emits_finished_and_thread_is_done(qtbot) -> None:
    gate = threading.Event()

    def factory(stop: threading.Event) -> Iterator[object]:
        yield Note("one")
        gate.wait(5)
        yield Note("two")

    runner = GeneratorRunner(factory)
    rec = Recorder(runner)
    runner.start()
    assert runner.wait(10) is False  # still blocked on the gate
    gate.set()
    assert runner.wait(5000) is True
    # wait() on the GUI thread delivers the pending events and finished synchronously.
    assert [e.message for e in rec.events] == ["one", "two"]
    assert rec.order[-1] == "finished"
    assert not runner.is_running()
    assert runner._thread is not None and runner._thread.isFinished()
    assert isinstance(runner._thread, QThread)


def test_start_twice_is_an_error(qtbot) -> None:
    runner = GeneratorRunner(lambda stop: iter(()))
    with qtbot.waitSignal(runner.finished, timeout=5000):
        runner.start()
    with pytest.raises(RuntimeError):
        runner.start()


def test_dropped_runner_is_kept_alive_until_finished(qtbot) -> None:
    finished: list[bool] = []
    gate = threading.Event()

    def factory(stop: threading.Event) -> Iterator[object]:
        gate.wait(5)
        yield Note("late")

    runner = GeneratorRunner(factory)
    runner.finished.connect(lambda: finished.append(True))
    runner.start()
    del runner
    import gc

    gc.collect()
    assert len(running_runners()) == 1
    gate.set()
    qtbot.waitUntil(lambda: not running_runners(), timeout=5000)
    assert finished == [True]
