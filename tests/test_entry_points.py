"""The installed ``headswap-gui`` command: ``--version`` and ``--self-check``, run as a user
runs them (the console script of the installed package, in a fresh process)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from headswap_gui import __version__

SELF_CHECK_STAGES = (
    "display", "Qt application", "window", "demo model", "pages", "demo images", "image folder",
    "training (1 epoch)", "evaluation", "export (TorchScript)", "close",
)


def _command() -> str:
    path = shutil.which("headswap-gui") or shutil.which("headswap-gui", path=str(Path(sys.executable).parent))
    assert path, "the headswap-gui console script is not installed (pip install -e .)"
    return path


def _private_env(tmp_path: Path) -> dict[str, str]:
    """The environment minus any Qt platform choice, with private config/data/cache folders."""
    env = {key: value for key, value in os.environ.items() if key != "QT_QPA_PLATFORM"}
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        (tmp_path / name).mkdir()
        env[name] = str(tmp_path / name)
    return env


def test_version_prints_the_version_without_loading_qt() -> None:
    out = subprocess.run([_command(), "--version"], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout.strip()) == (0, f"headswap-gui {__version__}")
    probe = (
        "import sys\nfrom headswap_gui.app import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit as end:\n    code = end.code\n"
        "print(code, sorted(m for m in ('PySide6', 'torch', 'pyqtgraph') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 []"


def test_self_check_passes_offscreen(tmp_path) -> None:
    """No QT_QPA_PLATFORM given: the self-check picks offscreen for itself, opens the window,
    trains the demo for one epoch and exits 0; it leaves nothing in the user's folders."""
    env = _private_env(tmp_path)
    out = subprocess.run(
        [_command(), "--self-check", "--self-check-timeout", "150"],
        env=env, capture_output=True, text=True, timeout=200, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"headswap {__version__} self-check") and "QT_QPA_PLATFORM=offscreen" in lines[0]
    for stage in SELF_CHECK_STAGES:
        assert any(line.startswith("  ok ") and f" s  {stage}" in line for line in lines), (stage, out.stdout)
    assert lines[-1].startswith("self-check passed in ")
    left = [p for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME") for p in (tmp_path / name).rglob("*")]
    assert left == []


def test_self_check_fails_with_the_stage_and_a_reason(tmp_path) -> None:
    out = subprocess.run(
        [_command(), "--self-check", "--self-check-timeout", "0.01"],
        env=_private_env(tmp_path), capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAIL" in out.stdout and "self-check passed" not in out.stdout
    assert "headswap-gui self-check failed at 'demo model': timed out waiting for the demo model to load" in out.stderr
