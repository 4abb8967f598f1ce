"""Environment set-up that must happen before pyqtgraph is imported.

pyqtgraph picks its Qt binding at import time from ``PYQTGRAPH_QT_LIB`` or, failing that, from
whichever binding is importable. Pinning it to PySide6 keeps pyqtgraph and our widgets on the
same binding even when PyQt is also installed in the environment.
"""

from __future__ import annotations

import os


def prepare_qt_environment() -> None:
    """Pin pyqtgraph to PySide6 (without overriding an explicit user choice) and load PySide6.

    Safe to call any number of times; it only sets a default.
    """
    os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
    import PySide6.QtCore  # noqa: F401  (PySide6 must be imported before pyqtgraph)
