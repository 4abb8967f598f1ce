"""The ``headswap-gui`` entry point: the application, the colour scheme, the main window.

The window is shown and painted first; torch, torchvision, timm and pyqtgraph are imported
afterwards on a worker thread (see :meth:`MainWindow.start_up`), so the window appears within
a moment of launch even though those imports take seconds. Nothing imported at the top of
this module, or of ``gui.main_window``, pulls them in.

Before Qt is loaded, :mod:`headswap_gui.gui.platform_check` makes sure the window can open (a
display, the system libraries Qt's xcb plugin needs); if not, it says what to install and
``main`` returns 1 instead of letting Qt abort.

``HEADSWAP_GUI_EXIT_AFTER_PAINT=1`` makes the process print start-up timings as JSON and
exit right after the first paint (used by the start-up test).

``--version`` prints the version and exits without loading Qt. ``--self-check`` runs
:mod:`headswap_gui.self_check` instead of the window: the window offscreen, the demo, one
tiny training epoch, a report of each stage, exit status 0 when all of it worked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from headswap_gui import __version__

_STARTED = time.perf_counter()

APP_NAME = "headswap-gui"
ORGANIZATION = "headswap"
ICON_PATH = Path(__file__).resolve().parent / "resources" / "headswap.png"
"""The window icon (rendered from ``headswap.svg`` by ``packaging/render_icon.py``)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headswap-gui",
        description="Desktop workbench: fine-tune a pretrained image classifier by replacing its head.",
        epilog="Model sources: demo, torchvision:NAME[@WEIGHTS], timm:NAME[@pretrained], hf:DIR, a headswap "
        "model folder, or a .safetensors/.pt/.pth file.",
    )
    parser.add_argument(
        "--demo", action="store_true",
        help="open with the offline demo model and the handwritten-digits images, ready to train",
    )
    parser.add_argument("model", nargs="?", default=None, help="a model source to load at start")
    parser.add_argument("data", nargs="?", default=None, help="an image folder (one subfolder per class) to open at start")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--self-check", action="store_true",
        help="check this installation and exit: open the window offscreen, load the demo, train one tiny "
        "epoch, print each stage with its time (exit status 0 when all pass)",
    )
    parser.add_argument(
        "--self-check-timeout", type=float, default=None, metavar="SECONDS",
        help="give up the self-check after this long (default 180)",
    )
    return parser


def apply_app_icon(app) -> bool:  # noqa: ANN001 - QGuiApplication, imported lazily
    """Give every window the headswap icon, and name the desktop file (Wayland and the
    taskbar find the icon through it). False when the icon file is missing or unreadable."""
    from PySide6.QtGui import QIcon

    app.setDesktopFileName(APP_NAME)
    icon = QIcon(str(ICON_PATH))
    if icon.isNull():
        return False
    app.setWindowIcon(icon)
    return True


def apply_color_scheme(app) -> None:  # noqa: ANN001 - QApplication, imported lazily
    """Follow the system's light/dark setting (Qt ≥ 6.5 reports it) with the Fusion style,
    and keep following it when the user switches."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor, QPalette

    app.setStyle("Fusion")
    hints = app.styleHints()

    def apply(*_args: object) -> None:
        scheme = hints.colorScheme() if hasattr(hints, "colorScheme") else Qt.ColorScheme.Unknown
        if scheme == Qt.ColorScheme.Dark:
            app.setPalette(_dark_palette(QPalette, QColor))
        else:
            app.setPalette(app.style().standardPalette())

    apply()
    if hasattr(hints, "colorSchemeChanged"):
        hints.colorSchemeChanged.connect(apply)


def _dark_palette(QPalette, QColor):  # noqa: ANN001, ANN202, N803
    palette = QPalette()
    role, group = QPalette.ColorRole, QPalette.ColorGroup
    window, base, alt = QColor(45, 45, 48), QColor(30, 30, 32), QColor(53, 53, 57)
    text, disabled = QColor(232, 232, 232), QColor(127, 127, 127)
    highlight = QColor(42, 130, 218)
    for r, c in (
        (role.Window, window), (role.WindowText, text), (role.Base, base), (role.AlternateBase, alt),
        (role.ToolTipBase, alt), (role.ToolTipText, text), (role.Text, text), (role.Button, window),
        (role.ButtonText, text), (role.BrightText, QColor(255, 80, 80)), (role.Link, QColor(90, 170, 255)),
        (role.Highlight, highlight), (role.HighlightedText, QColor(255, 255, 255)),
        (role.PlaceholderText, disabled), (role.Mid, QColor(70, 70, 74)), (role.Dark, QColor(25, 25, 27)),
        (role.Light, QColor(80, 80, 84)), (role.Shadow, QColor(0, 0, 0)),
    ):
        palette.setColor(r, c)
    for r in (role.WindowText, role.Text, role.ButtonText):
        palette.setColor(group.Disabled, r, disabled)
    palette.setColor(group.Disabled, role.Highlight, QColor(80, 80, 80))
    return palette


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.self_check:
        from headswap_gui.self_check import DEFAULT_TIMEOUT_S, run_self_check

        return run_self_check(timeout_s=args.self_check_timeout or DEFAULT_TIMEOUT_S)
    problem = None if _qt_app_running() else _platform_problem()
    if problem:
        print(problem, file=sys.stderr, flush=True)
        return 1
    from headswap_gui.gui.qt_env import prepare_qt_environment

    prepare_qt_environment()
    from PySide6.QtCore import QCoreApplication, QTimer
    from PySide6.QtWidgets import QApplication

    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setOrganizationDomain("headswap.invalid")
    QCoreApplication.setApplicationName(APP_NAME)
    existing = QApplication.instance()
    app = existing or QApplication([sys.argv[0] if sys.argv else APP_NAME])
    app.setApplicationDisplayName("headswap")
    apply_color_scheme(app)
    apply_app_icon(app)

    from headswap_gui.gui.main_window import MainWindow
    from headswap_gui.gui.worker import stop_all_runners

    window = MainWindow(defer_panels=True)
    def on_quit() -> None:
        window.shutdown()
        stop_all_runners(30_000)

    app.aboutToQuit.connect(on_quit)
    window.show()
    window.raise_()
    app.processEvents()  # expose + paint now, before anything slow runs
    window.repaint()
    painted = time.perf_counter()

    if os.environ.get("HEADSWAP_GUI_EXIT_AFTER_PAINT"):
        heavy = sorted(m for m in ("torch", "torchvision", "timm", "pyqtgraph") if m in sys.modules)
        print(json.dumps({"first_paint_s": round(painted - _STARTED, 3), "heavy_modules": heavy,
                          "visible": window.isVisible()}), flush=True)
        window.shutdown()
        return 0

    QTimer.singleShot(0, lambda: window.start_up(demo=args.demo, model=args.model, data=args.data))
    if existing is None:
        # Python's cyclic garbage collector runs in whichever thread happens to allocate; if
        # that is a worker thread and the garbage holds Qt objects, Qt crashes. For the life of
        # the app, collect on a GUI-thread timer instead (pyqtgraph's own remedy).
        from pyqtgraph.util.garbage_collector import GarbageCollector

        window.garbage_collector = GarbageCollector(interval=1.0)
    restore = _quit_on_signals(app, window, owned=existing is None)
    try:
        if existing is None:
            return int(app.exec())
        # Embedded (or a test): the application is not ours to end. Quitting it would leave
        # Qt's quit flag set and stop every later event loop, so run until the window closes.
        from PySide6.QtCore import QEventLoop

        loop = QEventLoop()
        window.closed.connect(loop.quit)
        loop.exec()
        on_quit()
        window.deleteLater()  # on this (the GUI) thread, not whenever a collector finds it
        return 0
    finally:
        restore()  # main() may run again in this process (tests): leave no handler or timer behind
        app.aboutToQuit.disconnect(on_quit)


def _qt_app_running() -> bool:
    """Whether this process already has a Qt application (embedded use, tests): its platform
    plugin is loaded, so there is nothing left to check."""
    gui = sys.modules.get("PySide6.QtGui")
    return gui is not None and gui.QGuiApplication.instance() is not None


def _platform_problem() -> str | None:
    """Why the window cannot open (no display, or system libraries Qt's xcb plugin lacks),
    found before Qt is loaded, because Qt itself would only abort with a generic message."""
    from headswap_gui.gui.platform_check import check_platform

    return check_platform()


def _quit_on_signals(app, window, owned: bool) -> Callable[[], None]:  # noqa: ANN001
    """Ctrl+C in the terminal (and SIGTERM) quit cleanly: layout saved, jobs stopped.

    Qt's event loop never hands control to Python by itself, so a light timer lets the
    interpreter run its signal handlers. Returns what undoes both.
    """
    import signal

    from PySide6.QtCore import QTimer

    def quit_now(*_args: object) -> None:
        window.save_layout()
        if owned:
            app.quit()  # aboutToQuit stops and waits for the workers
        else:
            window.close()  # main()'s own loop ends with the window

    previous = {}
    for name in ("SIGINT", "SIGTERM"):
        if hasattr(signal, name):
            try:
                previous[name] = signal.signal(getattr(signal, name), quit_now)
            except ValueError:  # not the main thread (embedded use)
                return lambda: None
    pulse = QTimer(app)
    pulse.setObjectName("signalPulse")
    pulse.timeout.connect(lambda: None)
    pulse.start(250)

    def restore() -> None:
        pulse.stop()
        pulse.deleteLater()
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)

    return restore


if __name__ == "__main__":
    sys.exit(main())
