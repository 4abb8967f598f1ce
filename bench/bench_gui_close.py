"""Closing the window: from ``close()`` to every job of the process ended. Target: 1 s idle,
2 s while training.

Each measurement is a fresh window in this process (offscreen, private settings and runs
folder) with the tiny timm model loaded and a small image folder open:

* idle      the model loaded, the folder scanned, nothing running;
* training  a long run under way (steps arriving), "stop and close?" answered yes.

Timed on the GUI thread around ``window.close()``, which returns once the window has stopped
and waited for its jobs; ``running_runners()`` must be empty afterwards.

    QT_QPA_PLATFORM=offscreen python bench/bench_gui_close.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import _common

TINY = "timm:test_efficientnet"


def _folder(root: Path) -> Path:
    from PIL import Image

    for label, colour in (("cats", (200, 40, 40)), ("dogs", (40, 40, 200))):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(12):
            Image.new("RGB", (24, 24), colour).save(root / label / f"{i}.png")
    return root


def measure(kind: str, work: Path) -> float:
    from headswap_gui.core import training
    from headswap_gui.core.events import StepMetrics
    from headswap_gui.gui.main_window import MainWindow
    from headswap_gui.gui.prompts import StopTrainingQuestion
    from headswap_gui.gui.settings import AppSettings
    from headswap_gui.gui.worker import running_runners

    StopTrainingQuestion.ask = classmethod(lambda cls, parent: True)  # type: ignore[method-assign]
    window = MainWindow(settings=AppSettings(), runs_root=work / "runs")
    window.show()
    _common.wait_until(lambda: window.load_model(TINY), 30, "the load to start")
    _common.wait_until(lambda: window.controller.loaded is not None and not window.is_loading(), 120, "the model")
    window.open_data_folder(str(_folder(work / "data")))
    _common.wait_until(lambda: window.data_panel.dataset() is not None, 60, "the scan")
    _common.wait_until(lambda: not running_runners(), 120, "idle")
    if kind == "training":
        steps: list[object] = []
        config = training.TrainConfig(epochs=500, batch_size=2, image_size=32, device="cpu", cache_features="off")
        window.start_training(config)
        window.jobs.runner("train").eventEmitted.connect(lambda e: steps.append(e) if isinstance(e, StepMetrics) else None)
        _common.wait_until(lambda: len(steps) >= 3, 120, "training steps")
    started = time.perf_counter()
    window.close()
    seconds = time.perf_counter() - started
    if running_runners():
        raise SystemExit(f"{kind}: jobs still running after close()")
    window.deleteLater()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    _common.header("Window close time", ["python", "bench/bench_gui_close.py", f"--runs {args.runs}"])
    rows = []
    for kind in ("idle", "training"):
        times = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as temp:
                os.environ["XDG_CONFIG_HOME"] = os.environ["XDG_DATA_HOME"] = temp
                times.append(measure(kind, Path(temp)))
        rows.append([kind, f"{_common.median(times):.3f}", _common.spread(times)])
    print(_common.table(["state", "close median (s)", "spread"], rows))
    del app


if __name__ == "__main__":
    main()
