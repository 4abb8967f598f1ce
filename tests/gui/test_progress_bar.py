"""ProgressBar paints with the rest of the window: QProgressBar.setValue paints on the spot
(and with it every dirty region of the window) whenever the value moves by 1 %."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QProgressBar, QVBoxLayout, QWidget

from headswap_gui.gui.progress_bar import ProgressBar


class _Paints(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.Paint:
            self.count += 1
        return False


def _shown(qtbot, host: QWidget, bar: QProgressBar) -> _Paints:
    qtbot.addWidget(host)
    QVBoxLayout(host).addWidget(bar)
    bar.setRange(0, 100)
    host.show()
    qtbot.waitExposed(host)
    paints = _Paints()
    bar.installEventFilter(paints)
    bar.update()
    qtbot.waitUntil(lambda: paints.count > 0, timeout=2000)  # its first paint is behind it
    paints.count = 0
    return paints


@pytest.mark.parametrize("kind", [QProgressBar, ProgressBar])
def test_set_value_paints_now_only_for_qt_own_bar(qtbot, kind: type[QProgressBar]) -> None:
    host, bar = QWidget(), kind()
    paints = _shown(qtbot, host, bar)
    bar.setValue(50)
    assert bar.value() == 50
    if kind is QProgressBar:
        assert paints.count == 1  # what ProgressBar exists to avoid
    else:
        assert paints.count == 0
        qtbot.waitUntil(lambda: paints.count == 1, timeout=2000)  # with the next regular paint
        assert bar.updatesEnabled()
