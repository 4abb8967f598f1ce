"""``headswap-gui --self-check``: does this installation (or desktop bundle) work?

Drives the real window, offscreen, through what a first-time user does: the window opens
with its icon, every page is built, the demo model and the digits images load offline, one
epoch trains on a few of the images, the validation images are evaluated and the model is
exported as TorchScript (with its parity check). Each stage is printed with its time; the
exit status is 0 when all pass, 1 with a sentence naming the stage that failed, and the
whole check gives up after a timeout.

Nothing of the user's is read or changed: settings, the digits folder and the run folder
live in a temporary directory that is removed afterwards. ``QT_QPA_PLATFORM`` is set to
``offscreen`` for this process only, and only when it is not set already.
"""

from __future__ import annotations

import gc
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

DEFAULT_TIMEOUT_S = 180.0
IMAGES_PER_CLASS = 4  # 40 digits: 32 train, 8 validate
_CLEANUP_GRACE_S = 30.0  # after the timeout, for stopping jobs before the hard exit


class SelfCheckFailed(Exception):  # noqa: N818 - a failed check, not an error in the program
    """A stage did not do what it should; the message says what happened instead."""


class _Report:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.perf_counter()
        self.stage = "start"
        self._stage_started = self.started

    def begin(self, stage: str) -> None:
        self.stage = stage
        self._stage_started = time.perf_counter()

    def ok(self, detail: str = "") -> None:
        seconds = time.perf_counter() - self._stage_started
        line = f"  ok  {seconds:6.2f} s  {self.stage}"
        print(f"{line}: {detail}" if detail else line, file=self.out, flush=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def run_self_check(timeout_s: float = DEFAULT_TIMEOUT_S, out: TextIO | None = None) -> int:
    """Run every stage; print the report to ``out`` (stdout); return the exit status."""
    out = sys.stdout if out is None else out
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt is imported, this process only
    report = _Report(out)
    watchdog = threading.Timer(timeout_s + _CLEANUP_GRACE_S, _give_up, args=(report, timeout_s))
    watchdog.daemon = True
    watchdog.start()
    work = Path(tempfile.mkdtemp(prefix="headswap-self-check-"))
    try:
        _run(report, work, deadline=time.monotonic() + timeout_s)
    except SelfCheckFailed as failure:
        return _failed(report, str(failure))
    except Exception as error:  # noqa: BLE001 - any error is a failed check, reported with its stage
        traceback.print_exc(file=sys.stderr)
        return _failed(report, f"{type(error).__name__}: {error}")
    finally:
        watchdog.cancel()
        shutil.rmtree(work, ignore_errors=True)
    print(f"self-check passed in {report.elapsed():.1f} s", file=out, flush=True)
    return 0


def _failed(report: _Report, message: str) -> int:
    print(f"FAIL {time.perf_counter() - report._stage_started:6.2f} s  {report.stage}", file=report.out, flush=True)
    print(f"headswap-gui self-check failed at '{report.stage}': {message}", file=sys.stderr, flush=True)
    return 1


def _give_up(report: _Report, timeout_s: float) -> None:
    """The event loop did not come back (a hung job, or a stuck shutdown): end the process."""
    print(
        f"headswap-gui self-check failed at '{report.stage}': no answer within {timeout_s:.0f} s "
        "(and the window could not be shut down)",
        file=sys.stderr, flush=True,
    )
    os._exit(1)


def _run(report: _Report, work: Path, deadline: float) -> None:
    from headswap_gui import __version__

    print(
        f"headswap {__version__} self-check (Python {platform.python_version()}, "
        f"{'bundle' if getattr(sys, 'frozen', False) else 'package'}, "
        f"QT_QPA_PLATFORM={os.environ.get('QT_QPA_PLATFORM')})",
        file=report.out, flush=True,
    )
    report.begin("display")
    from headswap_gui.gui.platform_check import check_platform

    problem = check_platform()
    if problem:
        raise SelfCheckFailed(problem)
    report.ok(os.environ.get("QT_QPA_PLATFORM", ""))

    report.begin("Qt application")
    from headswap_gui.gui.qt_env import prepare_qt_environment

    prepare_qt_environment()
    import PySide6
    from PySide6.QtCore import QCoreApplication, QSettings
    from PySide6.QtWidgets import QApplication

    from headswap_gui.app import apply_app_icon, apply_color_scheme

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(work / "settings"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QCoreApplication.setOrganizationName("headswap-self-check")
    QCoreApplication.setApplicationName("headswap-self-check")
    _quiet_offscreen_notices()
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "headswap-gui"])
    apply_color_scheme(app)
    if not apply_app_icon(app):
        from headswap_gui.app import ICON_PATH

        raise SelfCheckFailed(f"the window icon {ICON_PATH} is missing or unreadable")
    report.ok(f"PySide6 {PySide6.__version__}, platform {app.platformName()}")

    report.begin("window")
    from headswap_gui.gui.main_window import DEMO_TRAIN_SETTINGS, MainWindow
    from headswap_gui.gui.settings import AppSettings

    window = MainWindow(settings=AppSettings(), runs_root=work / "runs", defer_panels=True)
    window.demo_data_dir = str(work / "digits")
    # As app.main does: cyclic garbage is collected on the GUI thread, never on a worker.
    from pyqtgraph.util.garbage_collector import GarbageCollector

    collector = GarbageCollector(interval=1.0)
    try:
        _drive(report, app, window, work, deadline, DEMO_TRAIN_SETTINGS)
    except BaseException:
        _end_jobs(window, app, deadline)  # best effort; the first failure is the one reported
        raise
    finally:
        collector.timer.stop()
        gc.enable()
    if not _end_jobs(window, app, deadline):
        raise SelfCheckFailed("background jobs did not stop")


def _drive(report: _Report, app: Any, window: Any, work: Path, deadline: float, demo_settings: dict) -> None:
    errors: list[str] = []
    window.errorShown.connect(errors.append)
    window.modelLoadFailed.connect(errors.append)
    wait = _Waiter(app, errors, deadline)

    window.show()
    app.processEvents()
    if not window.isVisible():
        raise SelfCheckFailed("the window did not open")
    if window.windowIcon().isNull():
        raise SelfCheckFailed("the window has no icon")
    report.ok(f"{window.width()}×{window.height()}, icon set")

    report.begin("demo model")
    window.start_up(demo=True)
    wait.until(lambda: window.controller.loaded is not None and not window.is_loading(), "the demo model to load")
    loaded = window.controller.loaded
    heads = window.controller.heads
    if loaded.source != "demo" or not heads:
        raise SelfCheckFailed(f"loaded {loaded.source!r} with {len(heads)} head(s), expected the demo and its head")
    report.ok(f"{type(loaded.model).__name__}, head {heads[0].path} ({heads[0].out_features} classes)")

    report.begin("pages")
    wait.until(lambda: window.training_panel is not None, "the pages to be built")
    pages = {
        "Data": window.data_panel, "Train": window.training_panel, "plots": window.plots_view,
        "Results": window.results_panel, "Try it": window.try_panel, "Runs": window.runs_panel,
    }
    missing = [name for name, page in pages.items() if page is None]
    if missing:
        raise SelfCheckFailed(f"page(s) not available: {', '.join(missing)}")
    from headswap_gui.core.export import EXPORT_FORMATS  # File ▸ Export: a bundle must carry it

    report.ok(f"{', '.join(pages)}; export to {' or '.join(EXPORT_FORMATS)}")

    report.begin("demo images")
    wait.until(lambda: window.dataset() is not None, "the digits demo images")
    demo = window.dataset()
    if len(demo.class_names) != 10 or len(demo.samples) < 1000:
        raise SelfCheckFailed(f"the demo folder holds {len(demo.samples)} images in {len(demo.class_names)} classes")
    report.ok(f"{len(demo.samples):,} digits in {len(demo.class_names)} classes")

    report.begin("image folder")
    subset = _subset(demo, work / "few-digits", IMAGES_PER_CLASS)
    window.open_data_folder(str(subset))
    wait.until(lambda: window.dataset() is not None and Path(window.dataset().root) == subset, "the image folder scan")
    report.ok(f"{len(window.dataset().samples)} images")

    report.begin("training (1 epoch)")
    window.apply_training_settings(
        {**demo_settings, "epochs": 1, "batch_size": 8, "image_size": 32, "device": "cpu", "workers": 0}
    )
    config = window.training_panel.config()
    finished: list[Any] = []
    window.trainingFinished.connect(finished.append)
    if not window.start_training(config):
        raise SelfCheckFailed(f"training did not start{': ' + errors[-1] if errors else ''}")
    wait.until(lambda: bool(finished), "the training run")
    result = finished[0]
    if result is None or result.reason != "completed" or result.best_epoch is None:
        raise SelfCheckFailed(f"the run ended without a trained epoch: {getattr(result, 'message', result)}")
    report.ok(f"{result.reason}, validation accuracy {result.best_val_accuracy:.0%} (chance is 10%)")

    report.begin("evaluation")
    wait.until(lambda: window.state.evaluation is not None and not window.is_model_busy(), "the evaluation")
    report.ok(f"{len(window.state.evaluation.paths)} validation images")

    report.begin("export (TorchScript)")
    target = work / "model.pt"
    if not window.export_model(("torchscript", str(target))):
        raise SelfCheckFailed("the export did not start")
    wait.until(lambda: window.last_export is not None and not window.is_model_busy(), "the export")
    difference = window.last_export.max_abs_logit_difference
    if not target.is_file() or not difference < 1e-3:
        raise SelfCheckFailed(f"the exported model differs from the original by {difference}")
    report.ok(f"{target.stat().st_size / 1e6:.1f} MB, largest logit difference {difference:.1e}")

    report.begin("close")
    started = time.monotonic()
    window.close()
    from headswap_gui.gui.worker import running_runners

    if running_runners():
        raise SelfCheckFailed("background jobs were still running after the window closed")
    if errors:
        raise SelfCheckFailed(f"the window reported an error: {errors[-1]}")
    report.ok(f"every job ended in {time.monotonic() - started:.2f} s")


def _quiet_offscreen_notices() -> None:
    """Drop the offscreen plugin's "does not support propagateSizeHints()" notices (one per
    window); every other Qt message still reaches stderr."""
    from PySide6.QtCore import qInstallMessageHandler

    def handler(_mode: object, _context: object, message: str) -> None:
        if "propagateSizeHints" not in message:
            print(message, file=sys.stderr, flush=True)

    qInstallMessageHandler(handler)


class _Waiter:
    """Run the event loop until a condition holds, an error is shown, or the deadline passes."""

    def __init__(self, app: Any, errors: list[str], deadline: float) -> None:
        self.app, self.errors, self.deadline = app, errors, deadline

    def until(self, condition: Callable[[], bool], what: str) -> None:
        from PySide6.QtCore import QEventLoop, QTimer

        loop = QEventLoop()
        pulse = QTimer()
        pulse.setInterval(20)
        pulse.timeout.connect(lambda: loop.quit() if self._done(condition) else None)
        pulse.start()
        try:
            if not self._done(condition):
                loop.exec()
        finally:
            pulse.stop()
        if self.errors:
            raise SelfCheckFailed(self.errors[-1])
        if not condition():
            raise SelfCheckFailed(f"timed out waiting for {what}")

    def _done(self, condition: Callable[[], bool]) -> bool:
        return bool(self.errors) or time.monotonic() > self.deadline or condition()


def _subset(dataset: Any, target: Path, per_class: int) -> Path:
    """A small image folder: the first ``per_class`` images of each class of ``dataset``."""
    taken: dict[str, int] = {}
    for sample in dataset.samples:
        path, label = Path(sample.path), dataset.class_names[sample.label]
        if taken.get(label, 0) >= per_class:
            continue
        (target / label).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / label / path.name)
        taken[label] = taken.get(label, 0) + 1
    return target


def _end_jobs(window: Any, app: Any, deadline: float) -> bool:
    """Stop whatever still runs (after a failure) and dispose of the window; True when no
    job is left."""
    from PySide6.QtCore import QCoreApplication, QEvent

    from headswap_gui.gui.worker import running_runners, stop_all_runners

    if not window.is_closing():
        window.shutdown(max(1000, int((deadline - time.monotonic()) * 1000)))
    stop_all_runners(int(_CLEANUP_GRACE_S * 1000))
    window.hide()
    window.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
    app.processEvents()
    return not running_runners()
