"""The mouse wheel scrolls pages; it never changes a setting the user did not pick.

Qt's spin boxes, combo boxes and sliders take wheel events whenever the pointer is over them,
so scrolling a long settings form changes whichever field passes under the pointer (weight
decay went 0.01 → 0.0000 that way, and was saved for the next launch). :func:`guard_wheel`
gives such fields click-or-tab focus and hands the wheel to the scroll area around them
unless the field has the focus — the rule of most desktop apps.
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractScrollArea, QAbstractSlider, QAbstractSpinBox, QComboBox, QScrollBar, QWidget

__all__ = ["guard_wheel"]

_VALUE_WIDGETS = (QAbstractSpinBox, QComboBox, QAbstractSlider)


class _WheelGuard(QObject):
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if event.type() != QEvent.Type.Wheel or not isinstance(watched, QWidget) or watched.hasFocus():
            return False
        area = _scroll_area_around(watched)
        if area is not None:
            QCoreApplication.sendEvent(area.viewport(), event)  # scroll the page instead
        return True  # the value stays as it is


def _scroll_area_around(widget: QWidget) -> QAbstractScrollArea | None:
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QAbstractScrollArea):
            return parent
        parent = parent.parentWidget()
    return None


def guard_wheel(root: QWidget) -> None:
    """Protect every value field inside ``root`` (spin boxes, combo boxes, sliders; scroll
    bars keep their wheel) from wheel events it does not have the focus for."""
    guard = root.findChild(_WheelGuard, "wheelGuard") or _WheelGuard(root)
    guard.setObjectName("wheelGuard")
    for widget in root.findChildren(QWidget):
        if isinstance(widget, _VALUE_WIDGETS) and not isinstance(widget, QScrollBar):
            widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            widget.removeEventFilter(guard)  # once per widget, however often the root is guarded
            widget.installEventFilter(guard)
