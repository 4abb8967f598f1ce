"""Shared fixtures for the GUI tests: headless Qt, no leaked worker threads, private QSettings."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

from pathlib import Path  # noqa: E402
from typing import Iterator  # noqa: E402

import pytest  # noqa: E402
from PySide6.QtCore import QCoreApplication, QSettings  # noqa: E402

from headswap_gui.gui.worker import running_runners  # noqa: E402

_GRACE_MS = 3000


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
