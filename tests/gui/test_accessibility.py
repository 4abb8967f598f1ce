"""Every interactive widget the window creates has an objectName (for tests, style sheets and
settings) and an accessibleName (for screen readers).

The real MainWindow is opened offscreen with every page built. Qt's own sub-widgets are not
the app's to name and are left out: anything whose objectName starts with ``qt_``, the tab bar
of a QTabWidget and its scroll buttons, the viewport, scroll bars, corner widgets and header
views of scroll areas and item views, the line edit inside a spin box or combo box, a combo
box's popup list, and the clear button Qt puts into a QLineEdit.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractScrollArea,
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QGraphicsView,
    QHeaderView,
    QLineEdit,
    QPlainTextEdit,
    QScrollBar,
    QTabBar,
    QTabWidget,
    QTextEdit,
    QWidget,
)

from headswap_gui.gui.main_window import MainWindow

# What a person can operate: click, type into, choose from, drag, scroll through or focus.
INTERACTIVE = (
    QAbstractButton,  # QPushButton, QToolButton, QCheckBox, QRadioButton
    QLineEdit,
    QComboBox,
    QAbstractSpinBox,  # QSpinBox, QDoubleSpinBox, the learning-rate box
    QAbstractSlider,  # QSlider (QScrollBar is filtered below when Qt made it)
    QAbstractItemView,  # lists, tables, trees
    QTabWidget,
    QTextEdit,
    QPlainTextEdit,
    QGraphicsView,  # the pyqtgraph plots: pan, zoom, context menu
)

# Composite widgets whose children Qt creates and names (or leaves unnamed) itself.
_QT_COMPOSITES = (QComboBox, QAbstractSpinBox, QTabBar, QLineEdit)


def _qt_internal(widget: QWidget) -> bool:
    """True for the sub-widgets Qt builds inside its own composite widgets."""
    if widget.objectName().startswith("qt_"):
        return True
    if isinstance(widget, (QScrollBar, QHeaderView)):
        return True  # a scroll area's bars, an item view's headers
    if isinstance(widget, QTabBar) and isinstance(widget.parent(), QTabWidget):
        return True
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, _QT_COMPOSITES):
            return True  # spin box / combo line edit, combo popup, tab-bar scroll buttons, clear button
        name = parent.objectName()
        if name in ("qt_scrollarea_hcontainer", "qt_scrollarea_vcontainer"):
            return True  # a scroll area's scroll-bar containers (not its viewport: pages live there)
        parent = parent.parentWidget()
    area = widget.parentWidget()
    if isinstance(area, QAbstractScrollArea) and widget is area.viewport():
        return True
    return False


def interactive_widgets(root: QWidget) -> list[QWidget]:
    return [
        widget
        for widget in root.findChildren(QWidget)
        if isinstance(widget, INTERACTIVE) and not _qt_internal(widget)
    ]


def describe(widget: QWidget) -> str:
    chain = []
    parent = widget.parentWidget()
    while parent is not None and len(chain) < 4:
        chain.append(f"{type(parent).__name__}({parent.objectName()!r})")
        parent = parent.parentWidget()
    text = getattr(widget, "text", None)
    label = f" text={text()!r}" if callable(text) else ""
    return f"{type(widget).__name__}{label} in " + " < ".join(chain)


def test_all_pages_are_built(window: MainWindow) -> None:
    panels = (window.data_panel, window.training_panel, window.plots_view, window.results_panel, window.try_panel,
              window.runs_panel)
    for panel in panels:
        assert panel is not None
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == ["Data", "Train", "Results", "Check labels", "Map", "Try it", "Runs"]


def test_interactive_widgets_have_object_names(window: MainWindow) -> None:
    widgets = interactive_widgets(window)
    assert len(widgets) >= 30  # the filter must not throw the app's own widgets away
    missing = [describe(w) for w in widgets if not w.objectName().strip()]
    assert not missing, "interactive widgets without an objectName:\n" + "\n".join(missing)


def test_interactive_widgets_have_accessible_names(window: MainWindow) -> None:
    missing = [
        f"{w.objectName() or '?'}: {describe(w)}" for w in interactive_widgets(window) if not w.accessibleName().strip()
    ]
    assert not missing, "interactive widgets without an accessibleName:\n" + "\n".join(missing)


def test_object_names_are_unique_among_siblings_of_a_page(window: MainWindow) -> None:
    """Two widgets called the same under one page cannot be told apart by tests or settings."""
    for page in (window.data_panel, window.training_panel, window.plots_view, window.results_panel,
                 window.try_panel, window.labels_panel, window.model_panel):
        names = [w.objectName() for w in interactive_widgets(page)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        assert not duplicates, f"{page.objectName()}: duplicate objectNames {duplicates}"


def test_tabs_have_titles(window: MainWindow) -> None:
    for tabs in [window.tabs, *window.findChildren(QTabWidget)]:
        for index in range(tabs.count()):
            assert tabs.tabText(index).strip(), f"{tabs.objectName()}: tab {index} has no title"


def test_filter_keeps_app_widgets_and_drops_qt_internals(window: MainWindow) -> None:
    names = {w.objectName() for w in interactive_widgets(window)}
    for expected in ("pageTabs", "layerTree", "modelSearchEdit", "startButton", "smoothingSlider",
                     "logScaleCheckBox", "epochsSpinBox", "freezeComboBox", "trainingPlotsGraphics"):
        assert expected in names
    assert not any(name.startswith("qt_") for name in names)


# Scroll areas take keyboard focus (Qt gives QAbstractScrollArea a StrongFocus policy), so Tab
# stops on them and a screen reader announces them: they need names too.


def focusable_unnamed(root: QWidget) -> list[str]:
    from PySide6.QtCore import Qt

    return sorted(
        widget.objectName() or describe(widget)
        for widget in root.findChildren(QWidget)
        if widget.focusPolicy() & Qt.FocusPolicy.TabFocus
        and not _qt_internal(widget)
        and not widget.accessibleName().strip()
    )


def test_keyboard_focusable_widgets_have_accessible_names(window: MainWindow) -> None:
    assert focusable_unnamed(window) == []
