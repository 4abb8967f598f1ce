"""The pre-Qt check that says why the window cannot open (no display, missing xcb libraries)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from headswap_gui.gui.platform_check import (
    DEBIAN_PACKAGES,
    XCB_LIBRARIES,
    apt_install_line,
    check_platform,
    dlopen_missing,
    find_xcb_plugin,
    ldd_missing,
    parse_ldd,
    probe_missing_libraries,
    will_use_xcb,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb plugin is Linux-only")

LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd5a3f2000)
\tlibQt6XcbQpa.so.6 => /site-packages/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007f1)
\tlibxkbcommon-x11.so.0 => /lib/x86_64-linux-gnu/libxkbcommon-x11.so.0 (0x00007f2)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-image.so.0 => /lib/x86_64-linux-gnu/libxcb-image.so.0 (0x00007f3)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-cursor.so.0 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f4)
"""


def fake_pyside(tmp_path: Path) -> Path:
    """A PySide6 folder whose xcb plugin is an empty file."""
    platforms = tmp_path / "PySide6" / "Qt" / "plugins" / "platforms"
    platforms.mkdir(parents=True)
    (platforms / "libqxcb.so").write_bytes(b"")
    return tmp_path / "PySide6"


def fake_ldd(tmp_path: Path, output: str, rc: int = 0) -> Path:
    """An executable that prints ``output`` whatever it is asked, like ldd would."""
    (tmp_path / "ldd.txt").write_text(output)
    script = tmp_path / "ldd"
    script.write_text(f"#!/bin/sh\ncat '{tmp_path / 'ldd.txt'}'\nexit {rc}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


# --- the soname → package mapping --------------------------------------------------------


def test_apt_line_for_the_three_libraries_a_plain_debian_lacks() -> None:
    line = apt_install_line(["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    assert line == "sudo apt-get install -y libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1"


def test_apt_line_names_each_package_once_in_order_and_skips_unknown_libraries() -> None:
    line = apt_install_line([
        "libxkbcommon-x11.so.0", "libglib-2.0.so.0", "libnot-a-real-lib.so.7", "libgthread-2.0.so.0",
        "libxcb-render-util.so.0",
    ])
    assert line == "sudo apt-get install -y libxkbcommon-x11-0 libglib2.0-0 libxcb-render-util0"
    assert apt_install_line(["libnot-a-real-lib.so.7"]) is None
    assert apt_install_line([]) is None


def test_every_library_the_fallback_probe_tries_has_a_package() -> None:
    assert [s for s in XCB_LIBRARIES if s not in DEBIAN_PACKAGES] == []


# --- which platform Qt will use ----------------------------------------------------------


@pytest.mark.parametrize(("env", "platform", "xcb"), [
    ({"DISPLAY": ":0"}, "linux", True),
    ({}, "linux", True),  # Qt falls back to xcb, and then finds no display
    ({"QT_QPA_PLATFORM": "xcb", "WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
    ({"QT_QPA_PLATFORM": "xcb:foo=1;wayland"}, "linux", True),
    ({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"}, "linux", False),
    ({"QT_QPA_PLATFORM": "wayland;xcb"}, "linux", False),
    ({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, "linux", False),
    ({"XDG_SESSION_TYPE": "wayland", "DISPLAY": ":0"}, "linux", False),
    ({"DISPLAY": ":0"}, "darwin", False),
    ({}, "win32", False),
])
def test_will_use_xcb(env: dict[str, str], platform: str, xcb: bool) -> None:
    assert will_use_xcb(env, platform) is xcb


def test_no_check_off_xcb_even_when_the_probe_would_complain() -> None:
    def complain(_plugin: Path) -> list[str]:
        return ["libxcb-cursor.so.0"]

    assert check_platform({"QT_QPA_PLATFORM": "offscreen"}, "linux", probe=complain) is None
    assert check_platform({"WAYLAND_DISPLAY": "wayland-0"}, "linux", probe=complain) is None
    assert check_platform({}, "darwin", probe=complain) is None


# --- the check against a fake PySide6 and a fake ldd -------------------------------------


def test_parse_ldd_reads_glibc_and_musl_output() -> None:
    assert parse_ldd(LDD_OUTPUT) == ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    musl = "Error loading shared library libxcb-cursor.so.0: No such file or directory (needed by /p/libqxcb.so)\n"
    assert parse_ldd(musl) == ["libxcb-cursor.so.0"]
    assert parse_ldd("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n") == []


def test_check_with_a_fake_plugin_and_ldd_prints_the_libraries_and_the_apt_line(tmp_path: Path) -> None:
    pyside = fake_pyside(tmp_path)
    assert find_xcb_plugin(pyside) == pyside / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    ldd = fake_ldd(tmp_path, LDD_OUTPUT)
    message = check_platform({"DISPLAY": ":0"}, "linux", pyside, lambda p: ldd_missing(p, ldd))
    assert message is not None
    assert "libxcb-cursor.so.0, libxcb-icccm.so.4, libxcb-keysyms.so.1" in message
    assert "sudo apt-get install -y libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1" in message.splitlines()[2]
    assert "no display" not in message


def test_check_passes_when_ldd_finds_everything(tmp_path: Path) -> None:
    ldd = fake_ldd(tmp_path, "\tlibxcb-cursor.so.0 => /lib/libxcb-cursor.so.0 (0x1)\n")
    assert check_platform({"DISPLAY": ":0"}, "linux", fake_pyside(tmp_path), lambda p: ldd_missing(p, ldd)) is None


def test_a_failing_ldd_is_no_answer(tmp_path: Path) -> None:
    ldd = fake_ldd(tmp_path, "\tnot a dynamic executable\n", rc=1)
    assert ldd_missing(tmp_path / "libqxcb.so", ldd) is None
    assert ldd_missing(tmp_path / "libqxcb.so", tmp_path / "no-such-ldd") is None


def test_no_plugin_no_library_check(tmp_path: Path) -> None:
    assert find_xcb_plugin(tmp_path) is None
    message = check_platform({}, "linux", tmp_path, lambda p: pytest.fail("probed without a plugin"))
    assert message is not None and "no display" in message  # the display is still checked


def test_no_display_and_missing_libraries_are_one_message(tmp_path: Path) -> None:
    message = check_platform({}, "linux", fake_pyside(tmp_path), lambda p: ["libxcb-cursor.so.0"])
    assert message is not None
    assert message.startswith("headswap-gui cannot open its window: no display (neither DISPLAY nor WAYLAND_DISPLAY")
    assert "QT_QPA_PLATFORM=offscreen" in message
    assert "sudo apt-get install -y libxcb-cursor0" in message
    assert message.count("headswap-gui cannot open its window") == 1


@linux_only
@pytest.mark.skipif(shutil.which("ldd") is None, reason="needs ldd")
def test_real_ldd_on_the_real_plugin_moved_away_from_its_qt_libraries(tmp_path: Path) -> None:
    """The wheel's plugin finds Qt through ``$ORIGIN/../../lib``; copied elsewhere it cannot."""
    real = find_xcb_plugin()
    if real is None:
        pytest.skip("this PySide6 has no xcb plugin")
    pyside = fake_pyside(tmp_path)
    plugin = find_xcb_plugin(pyside)
    assert plugin is not None
    shutil.copyfile(real, plugin)
    missing = ldd_missing(plugin)
    assert missing is not None and "libQt6XcbQpa.so.6" in missing
    message = check_platform({"DISPLAY": ":0"}, "linux", pyside)
    assert message is not None and "pip install --force-reinstall PySide6" in message


# --- this machine ------------------------------------------------------------------------


@linux_only
def test_the_real_probe_only_reports_libraries_that_really_do_not_load() -> None:
    plugin = find_xcb_plugin()
    if plugin is None:
        pytest.skip("this PySide6 has no xcb plugin")
    missing = probe_missing_libraries(plugin)
    assert dlopen_missing(missing) == missing


@linux_only
def test_on_this_machine_the_check_passes() -> None:
    if find_xcb_plugin() is None or dlopen_missing():
        pytest.skip("the xcb libraries are not installed here")
    before = dict(os.environ)
    assert check_platform({"DISPLAY": ":0"}) is None
    assert dict(os.environ) == before  # nothing set process-wide


@linux_only
def test_no_display_exits_with_the_message_before_qt_is_loaded() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "XDG_SESSION_TYPE")}
    code = (
        "import sys\n"
        "from headswap_gui.app import main\n"
        "rc = main([])\n"
        "print('qt loaded' if 'PySide6' in sys.modules else 'qt not loaded')\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 1, done.stderr
    assert done.stdout.strip() == "qt not loaded"
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("headswap-gui cannot open its window: no display")
    assert "QT_QPA_PLATFORM=offscreen for headless use" in done.stderr

    # the entry point itself: the same, as the exit status of the process
    entry = subprocess.run([sys.executable, "-m", "headswap_gui.app"], env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert entry.returncode == 1 and entry.stderr == done.stderr
