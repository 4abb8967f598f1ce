"""Guard against PySide6 builds that drop a reference to ``True`` on every Python-side emit.

PySide6-Essentials 6.12.0 on Python 3.11 decrements ``True``'s refcount once per
``Signal.emit(True)``; after a few hundred emits the interpreter deallocates ``True`` and
aborts. The app emits booleans constantly (toggles, running state), so a broken build must
fail here, loudly and early, not crash a user's session. The check runs in small batches so a
leaking build fails the test long before the refcount can reach zero.

On Python >= 3.12 ``True`` is immortal and its refcount never moves; the test still passes.
"""

from __future__ import annotations

import sys

import pytest

QtCore = pytest.importorskip("PySide6.QtCore")

EMITS = 10_000
BATCH = 10
MARGIN = 8  # other code may legitimately create or drop a few references meanwhile


class _Emitter(QtCore.QObject):
    flagChanged = QtCore.Signal(bool)
    valueChanged = QtCore.Signal(object)


@pytest.mark.parametrize("signal_name", ["flagChanged", "valueChanged"])
@pytest.mark.parametrize("connected", [False, True], ids=["unconnected", "connected"])
def test_emitting_true_keeps_its_refcount(signal_name: str, connected: bool) -> None:
    emitter = _Emitter()
    received: list[int] = [0]

    def on_signal(value: object) -> None:
        received[0] += 1

    signal = getattr(emitter, signal_name)
    if connected:
        signal.connect(on_signal)  # direct connection: same thread, no event loop needed

    baseline = sys.getrefcount(True)
    for done in range(0, EMITS, BATCH):
        for _ in range(BATCH):
            signal.emit(True)
        drop = baseline - sys.getrefcount(True)
        if drop > MARGIN:
            pytest.fail(
                f"sys.getrefcount(True) fell by {drop} after {done + BATCH} emits of "
                f"{signal_name}; PySide6 {QtCore.__version__} leaks references to True on emit "
                "(PySide6-Essentials 6.12.0 does this on Python 3.11). Install another version."
            )
    assert received[0] == (EMITS if connected else 0)
