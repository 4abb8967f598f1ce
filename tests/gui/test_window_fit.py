"""The window fits the screen it opens on, and the wheel never changes a setting by accident."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QAbstractSpinBox, QApplication

from headswap_gui.gui.main_window import MainWindow
from headswap_gui.gui.settings import AppSettings


def _wheel(widget, steps: int = -3) -> None:
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(
        centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0), QPoint(0, 120 * steps),
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False,
    )
    QApplication.sendEvent(widget, event)


def test_the_window_opens_inside_the_screen(qtbot, isolated_settings, tmp_path):
    window = MainWindow(settings=AppSettings(), runs_root=tmp_path / "runs")
    qtbot.addWidget(window)
    window.show()
    area = window.screen().availableGeometry()
    assert window.width() <= area.width() and window.height() <= area.height()
    assert area.contains(window.geometry())
    left, right = window.main_splitter.sizes()
    assert left < right  # the pages get the larger share on a small screen


def test_a_geometry_saved_on_a_larger_screen_is_brought_back_inside(qtbot, isolated_settings, tmp_path):
    big = MainWindow(settings=AppSettings(), runs_root=tmp_path / "runs")
    qtbot.addWidget(big)
    big.setGeometry(200, 150, 2400, 1500)  # as on a 2560×1600 screen
    big.save_layout()
    window = MainWindow(settings=AppSettings(), runs_root=tmp_path / "runs")
    qtbot.addWidget(window)
    window.show()
    area = window.screen().availableGeometry()
    assert window.width() <= area.width() and window.height() <= area.height()


def test_the_wheel_over_an_unfocused_setting_leaves_it_alone(qtbot, window):
    window.show_page("train")
    qtbot.waitUntil(window.training_panel.isVisible, timeout=5000)
    box = next(b for b in window.training_panel.findChildren(QAbstractSpinBox) if b.isVisible() and b.isEnabled())
    before = box.value()
    _wheel(box)
    assert box.value() == before  # scrolled past, not changed
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5000)
    box.setFocus(Qt.FocusReason.MouseFocusReason)
    qtbot.waitUntil(box.hasFocus, timeout=5000)
    _wheel(box, steps=1)
    assert box.value() != before  # a field the user picked still takes the wheel
