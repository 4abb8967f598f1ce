"""Start-up: from process launch to the window's first paint (target: visible within 1.5 s),
and to the demo being ready to use (target: tree and data shown within 6 s).

Each launch is a fresh ``python`` process, offscreen, with private settings and data folders
(``XDG_CONFIG_HOME``/``XDG_DATA_HOME`` pointing into a temporary folder), timed on the shared
monotonic clock (``time.monotonic`` is CLOCK_MONOTONIC on Linux, the same in parent and child):

* marker   ``python -m headswap_gui.app`` with ``HEADSWAP_GUI_EXIT_AFTER_PAINT=1`` — the app's
           own hook: it prints a JSON line (with its in-process ``first_paint_s``, counted from
           the import of ``headswap_gui.app``) right after ``show()``, ``processEvents()`` and
           ``repaint()``, then exits. Timed launch → that line read from the pipe, and launch →
           process exit.
* filter   a small wrapper (``--child``) that patches nothing: it creates the QApplication
           (which ``app.main`` then reuses), installs an application event filter, and calls
           ``headswap_gui.app.main([])``; the filter notes the moment the first Paint event
           reaches the main window (objectName ``mainWindow``) and posts a zero timer, which
           runs once that paint (window and children, one synchronous pass) is done; it prints
           both moments and leaves with ``os._exit``. No ``HEADSWAP_GUI_EXIT_AFTER_PAINT``:
           the normal start-up path.

* ready    ``app.main(["--demo"])`` in a wrapper (``--child-ready``) whose 10 ms timer polls
           the window and notes when the warm-up imports are done, the pages are built, the
           layer tree shows the demo model and the Data page shows the digits (the folder is
           written by the warm-up launch, so the runs time a second launch, as users see it).

A baseline launch of ``python -c "import PySide6.QtWidgets"`` shows what the interpreter and Qt
alone cost here. One discarded warm-up launch first (file cache), then ``--runs`` launches of
each kind, interleaved; medians reported.

    python bench/bench_gui_startup.py            # 5 runs of each
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common

TARGET_S = 1.5
DEMO_TARGET_S = 6.0
HERE = Path(__file__).resolve()


def child() -> int:
    """The event-filter wrapper: run the real ``app.main`` and report its first paint."""
    from headswap_gui.gui.qt_env import prepare_qt_environment

    prepare_qt_environment()
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication([sys.argv[0]])
    marks: dict[str, float] = {}

    def report() -> None:
        marks["paint_done"] = time.monotonic()
        print(json.dumps({"paint_begins": marks["paint_begins"], "paint_done": marks["paint_done"],
                          "heavy": sorted(m for m in ("torch", "torchvision", "timm", "pyqtgraph") if m in sys.modules)}),
              flush=True)
        os._exit(0)

    class FirstPaint(QObject):
        def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802 - Qt override
            if (
                "paint_begins" not in marks
                and event.type() == QEvent.Type.Paint
                and getattr(obj, "objectName", lambda: "")() == "mainWindow"
            ):
                marks["paint_begins"] = time.monotonic()
                # Qt paints the window and all its children in one go, then flushes; a zero
                # timer posted now runs right after that.
                QTimer.singleShot(0, report)
            return False

    watcher = FirstPaint()
    app.installEventFilter(watcher)
    from headswap_gui import app as app_module

    app_module.main([])
    return 1  # the filter exits first


def child_ready() -> int:
    """Run the real ``app.main(["--demo"])`` and report when the demo is ready to use: the
    layer tree populated with the model and the Data page showing the digits. A 10 ms timer
    polls the window (signals could fire before a wrapper connected to them); every stage it
    passes is reported, so a slow one is named."""
    from headswap_gui.gui.qt_env import prepare_qt_environment

    prepare_qt_environment()
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication([sys.argv[0]])
    marks: dict[str, float] = {}
    seen: set[str] = set()

    def poll() -> None:
        window = next((w for w in app.topLevelWidgets() if w.objectName() == "mainWindow"), None)
        if window is None:
            return
        now = time.monotonic()
        if window.jobs.is_running("warmup"):
            seen.add("warmup")
        stages = {
            "window": window.isVisible(),
            "imports": "warmup" in seen and not window.jobs.is_running("warmup"),
            "panels": window.data_panel is not None,
            "tree": window.model_panel.tree_model.rowCount() > 0,
            "data": window.dataset() is not None,
        }
        for name, passed in stages.items():
            if passed:
                marks.setdefault(name, now)
        if all(stages.values()):
            print(json.dumps(marks), flush=True)
            os._exit(0)

    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(10)
    from headswap_gui import app as app_module

    app_module.main(["--demo"])
    return 1  # the poll exits first


def launch(kind: str, env: dict[str, str]) -> dict[str, float]:
    if kind == "baseline":
        command = [sys.executable, "-c", "import PySide6.QtWidgets"]
    elif kind == "marker":
        command = [sys.executable, "-m", "headswap_gui.app"]
        env = {**env, "HEADSWAP_GUI_EXIT_AFTER_PAINT": "1"}
    elif kind == "ready":
        command = [sys.executable, str(HERE), "--child-ready"]
    else:
        command = [sys.executable, str(HERE), "--child"]
    start = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=_common.ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    line_at = time.monotonic()
    process.stdout.read()
    process.wait(timeout=120)
    exit_at = time.monotonic()
    out = {"exit": exit_at - start}
    if kind == "marker":
        data = json.loads(line)
        assert data["visible"], data
        out.update(line=line_at - start, in_process=data["first_paint_s"], heavy=len(data["heavy_modules"]))
    elif kind == "filter":
        data = json.loads(line)
        out.update(paint_begins=data["paint_begins"] - start, paint_done=data["paint_done"] - start,
                   heavy=len(data["heavy"]))
    elif kind == "ready":
        out.update({f"ready_{stage}": at - start for stage, at in json.loads(line).items()})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-ready", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child()
    if args.child_ready:
        return child_ready()

    _common.header("bench_gui_startup: process launch → first paint of the main window")
    home = Path(tempfile.mkdtemp(prefix="headswap-bench-startup-"))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache")}
    env.pop("HEADSWAP_GUI_EXIT_AFTER_PAINT", None)
    kinds = ("baseline", "marker", "filter", "ready")
    for kind in kinds:  # warm-up, discarded
        launch(kind, env)
    results: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for run in range(args.runs):
        for kind in kinds:
            result = launch(kind, env)
            results[kind].append(result)
            print(f"  run {run + 1} {kind:8s}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()), flush=True)

    def med(kind: str, key: str) -> float:
        return _common.median([r[key] for r in results[kind]])

    def spr(kind: str, key: str) -> str:
        return _common.spread([r[key] for r in results[kind]])

    rows = [
        ("python -c 'import PySide6.QtWidgets' (baseline), to exit", med("baseline", "exit"), spr("baseline", "exit")),
        ("app marker: launch → JSON line after first paint", med("marker", "line"), spr("marker", "line")),
        ("app marker: first_paint_s reported in-process (from import of app)", med("marker", "in_process"),
         spr("marker", "in_process")),
        ("app marker: launch → process exit", med("marker", "exit"), spr("marker", "exit")),
        ("event filter: launch → first Paint event reaches the window", med("filter", "paint_begins"),
         spr("filter", "paint_begins")),
        ("event filter: launch → that paint handled", med("filter", "paint_done"), spr("filter", "paint_done")),
    ]
    for stage, what in (("imports", "torch, torchvision, timm imported (warm-up job done)"),
                        ("panels", "every page built"), ("tree", "layer tree shows the demo model"),
                        ("data", "Data page shows the digits")):
        rows.append((f"demo (--demo): launch → {what}", med("ready", f"ready_{stage}"), spr("ready", f"ready_{stage}")))
    print()
    print(_common.table(["measure", "median s", "min–max s"], rows))
    heavy = max(r["heavy"] for r in results["marker"] + results["filter"])
    print(f"\nheavy modules (torch, torchvision, timm, pyqtgraph) imported before the first paint: {heavy}")
    ready = max(med("ready", "ready_tree"), med("ready", "ready_data"))
    print(f"DEMO READY launch → tree and data shown: {ready:.3f} s median — target ≤ {DEMO_TARGET_S} s "
          f"{'met' if ready <= DEMO_TARGET_S else 'MISSED'}")
    visible = max(med("marker", "line"), med("filter", "paint_done"))
    print(f"STARTUP launch → first paint: {visible:.3f} s median (the larger of the two methods) — "
          f"target ≤ {TARGET_S} s {'met' if visible <= TARGET_S else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
