"""A progress bar that paints with the rest of the window.

``QProgressBar.setValue`` repaints synchronously whenever the value moves by 1 % or more, and
a synchronous repaint paints every dirty region of the window, not just the bar: the Train
page's plots after a layout change, the layer tree after a head swap. So a progress update in
the middle of a slot paints the window there and then, once, and again when the event loop
paints what the rest of the slot changed. At a run's start that made the window's one frozen
moment ~30 ms longer (bench_gui_latency), and while training it doubled the Train page's
paints (every paint is GUI-thread work the training thread waits for). Here a new value is
painted with the next regular paint, as every other widget's change is.
"""

from __future__ import annotations

from PySide6.QtWidgets import QProgressBar

__all__ = ["ProgressBar"]


class ProgressBar(QProgressBar):
    """:class:`QProgressBar` whose ``setValue`` schedules its paint instead of painting."""

    def setValue(self, value: int) -> None:  # noqa: N802 - Qt API
        if not self.updatesEnabled():
            super().setValue(value)
            return
        self.setUpdatesEnabled(False)  # QWidget.repaint does nothing while updates are off
        try:
            super().setValue(value)
        finally:
            self.setUpdatesEnabled(True)  # schedules the bar's paint (an ordinary update)
