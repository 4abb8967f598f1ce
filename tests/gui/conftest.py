"""Shared fixtures for the GUI tests: headless Qt, no leaked worker threads, private QSettings."""

from __future__ import annotations

import gc
import os
import threading

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QCoreApplication, QEvent, QSettings, QTimer

from headswap_gui.gui.worker import running_runners

if TYPE_CHECKING:
    from headswap_gui.gui.main_window import MainWindow

_GRACE_MS = 3000


@pytest.fixture(autouse=True)
def _collect_garbage_on_the_gui_thread(qtbot) -> Iterator[None]:
    """Collect a test's cyclic garbage (windows, panels, their lambdas) here, on the GUI
    thread. Left to the automatic collector it can be freed later on a worker thread of
    another test, which destroys Qt objects off their thread and crashes (seen as a
    segfault in a training thread). The app itself collects on a GUI timer (app.main)."""
    yield
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)  # deleteLater first
    gc.collect()


@pytest.fixture(autouse=True)
def _no_leaked_threads_or_timers(qtbot, qapp) -> Iterator[None]:
    """Fail any test that leaves a Python thread or an application-wide QTimer running
    (runners are checked by ``_no_leaked_runners``; QThreads run only inside runners)."""
    threads_before = set(threading.enumerate())
    timers_before = {id(t) for t in qapp.findChildren(QTimer) if t.isActive()}
    yield

    def new_threads() -> list[threading.Thread]:
        # QThreads that ran Python show up as _DummyThread entries forever; they are the
        # runners' threads, which _no_leaked_runners checks.
        return [
            t for t in threading.enumerate()
            if t not in threads_before and t.is_alive() and not isinstance(t, threading._DummyThread)
        ]

    if new_threads():
        try:
            qtbot.waitUntil(lambda: not new_threads(), timeout=_GRACE_MS)
        except qtbot.TimeoutError:
            pytest.fail(f"test left Python thread(s) running: {[t.name for t in new_threads()]}")
    timers = [t for t in qapp.findChildren(QTimer) if t.isActive() and id(t) not in timers_before]
    if timers:
        for timer in timers:
            timer.stop()
        pytest.fail(f"test left application timer(s) running: {[t.objectName() or repr(t) for t in timers]}")


@pytest.fixture(autouse=True)
def _no_leaked_runners(qtbot) -> Iterator[None]:
    """Fail any test that leaves a GeneratorRunner running (napari does the same for workers).

    Runners get a moment to wind down on their own; stragglers are then stopped and waited
    for, so one bad test does not poison the next, and the test is failed.
    """
    yield
    if not running_runners():
        return
    try:
        qtbot.waitUntil(lambda: not running_runners(), timeout=_GRACE_MS)
        return
    except qtbot.TimeoutError:
        pass
    leaked = running_runners()
    for runner in leaked:
        runner.request_stop()
    try:
        qtbot.waitUntil(lambda: not running_runners(), timeout=_GRACE_MS)
    except qtbot.TimeoutError:
        pass
    pytest.fail(f"test left {len(leaked)} GeneratorRunner(s) running: {leaked!r}")


@pytest.fixture
def isolated_settings(tmp_path: Path, qapp) -> Iterator[Path]:
    """Point QSettings (INI format, all scopes) at ``tmp_path`` under a test organisation."""
    saved = (
        QCoreApplication.organizationName(),
        QCoreApplication.organizationDomain(),
        QCoreApplication.applicationName(),
        QSettings.defaultFormat(),
    )
    settings_dir = tmp_path / "settings"
    settings_dir.mkdir()
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, str(settings_dir))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QCoreApplication.setOrganizationName("headswap-tests")
    QCoreApplication.setOrganizationDomain("tests.headswap.invalid")
    QCoreApplication.setApplicationName("headswap-gui-tests")
    try:
        yield settings_dir
    finally:
        org, domain, app, fmt = saved
        QCoreApplication.setOrganizationName(org)
        QCoreApplication.setOrganizationDomain(domain)
        QCoreApplication.setApplicationName(app)
        QSettings.setDefaultFormat(fmt)


@pytest.fixture
def window(qtbot, isolated_settings, tmp_path, monkeypatch) -> Iterator[MainWindow]:
    """The real main window with every page built, private settings and run folder, shown."""
    from PySide6.QtWidgets import QMessageBox

    from headswap_gui.gui.main_window import MainWindow
    from headswap_gui.gui.prompts import ReplaceTrainedHeadQuestion, StopTrainingQuestion
    from headswap_gui.gui.settings import AppSettings

    # A failing test may leave training running; closing must then never wait on a modal question.
    monkeypatch.setattr(StopTrainingQuestion, "ask", classmethod(lambda cls, parent: True))
    monkeypatch.setattr(ReplaceTrainedHeadQuestion, "ask", classmethod(lambda cls, parent: True))  # tests say no
    win = MainWindow(settings=AppSettings(), runs_root=tmp_path / "runs")
    win.demo_data_dir = str(tmp_path / "digits")
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.shutdown(10_000)
    for box in win.findChildren(QMessageBox):
        box.close()


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Two classes of small coloured squares, three per class (plus one file to skip)."""
    root = tmp_path / "pets"
    rng = np.random.default_rng(0)
    for label, colour in (("cats", (200, 40, 40)), ("dogs", (40, 40, 200))):
        (root / label).mkdir(parents=True)
        for i in range(3):
            pixels = np.clip(np.array(colour) + rng.integers(-30, 30, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{label}_{i}.png")
    (root / "cats" / "notes.txt").write_text("not an image")
    return root
