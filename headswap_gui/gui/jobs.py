"""Who may touch the live model: an exclusive lease that every job reading or writing it holds.

The window's jobs (train, evaluate, export, predict) run on worker threads and share one
``nn.Module``. Disabling buttons is not enough: a prediction already in flight when Train is
pressed would run forwards on the model that ``fit`` is moving, freezing and hooking. So each
such job takes the :class:`ModelLease` on its own thread before its first look at the model
and gives it back when its generator ends; a job that is asked to stop while it waits never
touches the model at all. Plain Python (no Qt): the rule is testable on its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

GeneratorFactory = Callable[[threading.Event], Iterator[object]]

_POLL_S = 0.02  # how often a waiting job looks at its stop flag


class ModelLease:
    """An exclusive, stop-aware lease on the live model, with a log of who held it when."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder: str | None = None
        self._log: list[tuple[str, str]] = []  # ("acquired" | "released", job), in order
        self._log_lock = threading.Lock()

    @property
    def holder(self) -> str | None:
        """The job that holds the model now (None: free)."""
        return self._holder

    def history(self) -> list[tuple[str, str]]:
        with self._log_lock:
            return list(self._log)

    @contextmanager
    def held(self, job: str, stop: threading.Event | None = None, timeout_s: float | None = None) -> Iterator[bool]:
        """Hold the lease for the block; yields False (without it) when ``stop`` is set or
        ``timeout_s`` passes while waiting."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        acquired = self._lock.acquire(blocking=False)
        while not acquired:
            if (stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() >= deadline):
                yield False
                return
            acquired = self._lock.acquire(timeout=_POLL_S)
        self._holder = job
        self._record("acquired", job)
        try:
            yield True
        finally:
            self._record("released", job)
            self._holder = None
            self._lock.release()

    def _record(self, what: str, job: str) -> None:
        with self._log_lock:
            self._log.append((what, job))
            del self._log[:-200]  # a long session keeps only the recent past


def leased(lease: ModelLease, job: str, factory: GeneratorFactory) -> GeneratorFactory:
    """``factory`` whose generator first waits for the lease on its worker thread, holds it
    to the end (close included), and yields nothing if stopped while waiting."""

    def run(stop: threading.Event) -> Iterator[object]:
        with lease.held(job, stop) as granted:
            if granted:
                yield from factory(stop)

    return run
