"""The Qt front end of headswap: widgets, item models and workers over ``headswap_gui.core``.

Nothing here is imported by core. Importing this package has no side effects; call
:func:`headswap_gui.gui.qt_env.prepare_qt_environment` before the first pyqtgraph import so
pyqtgraph binds to PySide6 rather than whichever Qt binding it happens to find first.
"""
