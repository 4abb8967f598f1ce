"""Say plainly why the window cannot open, before Qt aborts with a generic error.

On a plain Debian/Ubuntu the PySide6 wheel's X11 platform plugin (``libqxcb.so``) cannot load
because a few system libraries are not installed (``libxcb-cursor0``, ``libxcb-icccm4``,
``libxcb-keysyms1``, …). Qt then prints only "could not load the Qt platform plugin "xcb"" and
aborts the process. Likewise, with no display at all Qt aborts with "could not connect to
display". This module finds out beforehand — which libraries the plugin cannot resolve (read
from ``ldd``, or by trying to load Qt's documented list when there is no ``ldd``), mapped to
their Debian/Ubuntu packages — so ``headswap-gui`` can print one message with the exact
``apt-get install`` line and exit with a non-zero status instead.

It imports nothing from Qt (it must run before Qt is loaded) and changes no environment
variable: everything it reads comes in as a parameter, with the real environment, plugin and
library probe as defaults.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

#: The libraries Qt 6's xcb plugin links against beyond what a desktop always has (what
#: ``ldd libqxcb.so`` lists for PySide6 6.11). Tried one by one when ``ldd`` is unavailable.
XCB_LIBRARIES: tuple[str, ...] = (
    "libxcb.so.1", "libX11-xcb.so.1", "libxkbcommon.so.0", "libxkbcommon-x11.so.0",
    "libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-image.so.0",
    "libxcb-render-util.so.0", "libxcb-util.so.1", "libxcb-xkb.so.1", "libxcb-shape.so.0",
    "libxcb-randr.so.0", "libxcb-render.so.0", "libxcb-shm.so.0", "libxcb-sync.so.1",
    "libxcb-xfixes.so.0",
)

#: Shared-library soname → the Debian/Ubuntu package that ships it.
DEBIAN_PACKAGES: Mapping[str, str] = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",  # older Qt builds
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6",
    "libXext.so.6": "libxext6",
    "libXrender.so.1": "libxrender1",
    "libXi.so.6": "libxi6",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libGLX.so.0": "libglx0",
    "libOpenGL.so.0": "libopengl0",
    "libGLdispatch.so.0": "libglvnd0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
    "libpng16.so.16": "libpng16-16",
    "libexpat.so.1": "libexpat1",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
}

#: Libraries that come inside the PySide6 wheel, not from the system.
_BUNDLED_PREFIXES = ("libQt6", "libicu", "libpyside6", "libshiboken6")

_LDD_MISSING = re.compile(
    r"^\s*(\S+)\s+=>\s+not found\s*$"  # glibc
    r"|Error loading shared library (\S+?):",  # musl
    re.MULTILINE,
)

Probe = Callable[[Path], Sequence[str]]


def will_use_xcb(env: Mapping[str, str], platform: str = sys.platform) -> bool:
    """Whether Qt will pick its X11 (xcb) platform plugin in this environment.

    That is on Linux when ``QT_QPA_PLATFORM`` names xcb first, or is unset outside a Wayland
    session (Qt then prefers Wayland when ``WAYLAND_DISPLAY`` or ``XDG_SESSION_TYPE=wayland``
    says there is one, and falls back to xcb otherwise, display or not).
    """
    if not platform.startswith("linux"):
        return False
    requested = env.get("QT_QPA_PLATFORM", "").strip()
    if requested:
        return requested.split(";")[0].split(":")[0].strip() == "xcb"
    return not (env.get("WAYLAND_DISPLAY") or env.get("XDG_SESSION_TYPE", "").lower() == "wayland")


def find_xcb_plugin(pyside_dir: Path | None = None) -> Path | None:
    """``PySide6/Qt/plugins/platforms/libqxcb.so`` of the installed PySide6 (found without
    importing it), or of ``pyside_dir``; None when there is no such file."""
    if pyside_dir is None:
        spec = importlib.util.find_spec("PySide6")
        if spec is None or spec.origin is None:
            return None
        pyside_dir = Path(spec.origin).parent
    plugin = pyside_dir / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def parse_ldd(output: str) -> list[str]:
    """The sonames ``ldd`` reports as not found, in its order, without repeats."""
    found = (a or b for a, b in _LDD_MISSING.findall(output))
    return list(dict.fromkeys(found))


def ldd_missing(plugin: Path, ldd: str | os.PathLike[str] | None = None) -> list[str] | None:
    """The plugin's dependencies (direct and indirect) that the dynamic loader cannot find,
    according to ``ldd`` (or the given ldd program); None when ldd is unavailable or fails."""
    import subprocess

    program = os.fspath(ldd) if ldd is not None else shutil.which("ldd")
    if program is None:
        return None
    try:
        done = subprocess.run(
            [program, os.fspath(plugin)], capture_output=True, text=True, timeout=15, check=False,
            env={**os.environ, "LC_ALL": "C"},  # the child's copy only
        )
    except (OSError, subprocess.SubprocessError):
        return None
    missing = parse_ldd(done.stdout + "\n" + done.stderr)
    if done.returncode != 0 and not missing:
        return None
    return missing


def dlopen_missing(sonames: Iterable[str] = XCB_LIBRARIES) -> list[str]:
    """The sonames the dynamic loader cannot load (each is tried with ``ctypes.CDLL``)."""
    import ctypes

    missing = []
    for soname in sonames:
        try:
            ctypes.CDLL(soname)
        except OSError:
            missing.append(soname)
    return missing


def probe_missing_libraries(plugin: Path) -> list[str]:
    """The default probe: ``ldd`` on the plugin, or Qt's known list when ldd cannot tell."""
    missing = ldd_missing(plugin)
    return dlopen_missing() if missing is None else missing


def apt_install_line(sonames: Iterable[str]) -> str | None:
    """``sudo apt-get install -y …`` for the packages of the given sonames (each once, in
    order); None when none of them is a known system library."""
    packages = [DEBIAN_PACKAGES[s] for s in sonames if s in DEBIAN_PACKAGES]
    return "sudo apt-get install -y " + " ".join(dict.fromkeys(packages)) if packages else None


def missing_libraries_lines(sonames: Sequence[str]) -> list[str]:
    """What to tell the user about the libraries the xcb plugin cannot load, and how to
    install them."""
    one = len(sonames) == 1
    lines = [
        f"Qt's X11 (xcb) platform plugin needs {'a library' if one else 'libraries'} that "
        f"{'is' if one else 'are'} not installed: " + ", ".join(sonames) + ".",
    ]
    install = apt_install_line(sonames)
    if install:
        lines.append(f"Install {'it' if one else 'them'} (Debian/Ubuntu) with:\n    {install}")
    bundled = [s for s in sonames if s.startswith(_BUNDLED_PREFIXES)]
    if bundled:
        lines.append(", ".join(bundled) + " ships with PySide6; reinstall it: pip install --force-reinstall PySide6")
    unknown = [s for s in sonames if s not in DEBIAN_PACKAGES and s not in bundled]
    if unknown:
        lines.append("Find the package for " + ", ".join(unknown) + " with: apt-file search " + unknown[0])
    return lines


def no_display_reason(env: Mapping[str, str]) -> str:
    """Why Qt would have no display to connect to."""
    if env.get("QT_QPA_PLATFORM", "").strip() and env.get("WAYLAND_DISPLAY"):
        return "no X display (QT_QPA_PLATFORM asks for xcb, and DISPLAY is not set)"
    return "no display (neither DISPLAY nor WAYLAND_DISPLAY is set)"


def check_platform(
    env: Mapping[str, str] | None = None,
    platform: str = sys.platform,
    pyside_dir: Path | None = None,
    probe: Probe = probe_missing_libraries,
) -> str | None:
    """The message to print instead of starting Qt, or None when the window can open as far
    as can be told beforehand.

    Only the xcb platform is checked (see :func:`will_use_xcb`). The libraries checked are those
    of PySide6's ``libqxcb.so`` (that of the installed PySide6, or of ``pyside_dir``; no library
    check when there is none); ``probe`` returns the libraries it needs that cannot be loaded.
    """
    env = os.environ if env is None else env
    if not will_use_xcb(env, platform):
        return None
    plugin = find_xcb_plugin(pyside_dir)
    missing = list(probe(plugin)) if plugin is not None else []
    body = missing_libraries_lines(missing) if missing else []
    headline = "headswap-gui cannot open its window: "
    if not env.get("DISPLAY"):
        lines = [headline + no_display_reason(env) + ".",
                 "Run it under a desktop session, or set QT_QPA_PLATFORM=offscreen for headless use."]
        if body:
            lines += ["Also, " + body[0], *body[1:]]
        return "\n".join(lines)
    if body:
        return "\n".join([headline + body[0], *body[1:], "(For headless use, set QT_QPA_PLATFORM=offscreen.)"])
    return None
