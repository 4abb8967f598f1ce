"""Push buttons built the one way every panel builds them.

Each push button of the window carries an object name (tests find it with ``findChild``) and an
accessible name (what a screen reader says), usually a tooltip and a ``clicked`` slot; the panels
used to repeat those four or five lines per button. :func:`push_button` is the one place that sets them.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import SignalInstance
from PySide6.QtWidgets import QPushButton, QWidget

__all__ = ["push_button"]


def push_button(
    parent: QWidget,
    text: str,
    *,
    name: str,
    accessible: str,
    on_click: Callable[[], object] | SignalInstance | None = None,
    tooltip: str | None = None,
) -> QPushButton:
    """A ``QPushButton`` child of *parent* showing *text*, with its object and accessible names set.

    Every button of the window is findable by name in tests (*name*, the object name) and by
    screen readers by its accessible name (*accessible*); one place sets both, so no button is
    left without either. *tooltip* is set when given, and ``clicked`` is connected to *on_click*
    (a slot or a signal to forward) when given; checkable buttons that react to ``toggled`` leave
    it out and connect their own signal. Pass translated strings (``self.tr(...)``) from the call site.
    """
    button = QPushButton(text, parent)
    button.setObjectName(name)
    button.setAccessibleName(accessible)
    if tooltip is not None:
        button.setToolTip(tooltip)
    if on_click is not None:
        button.clicked.connect(on_click)
    return button
