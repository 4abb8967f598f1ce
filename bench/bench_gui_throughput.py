"""Training throughput in the window against ``headswap train``: does the GUI cost speed?

The same run on both sides — the demo model (EfficientNet-Lite0, ImageNet weights), the same
image folder (the first ``--per-class`` digits of every class, copied to a folder of its own),
the same ``TrainConfig`` (freeze ``full`` so no feature cache: the worker runs the whole model
every step; 64 px, batch 32, AdamW 1e-3, cosine, seed 0, fp32 on the CPU) and the same
``cpu_threads`` — each in a fresh process:

* window  ``MainWindow`` offscreen at 1400×900 with every page built: ``load_model("demo")``,
          ``open_data_folder(DATA)``, ``torch.manual_seed(0)``, ``start_training(config)``. The
          events go through the GeneratorRunner to the real Train page: progress panel, live
          plots (repainting), the layer tree refresh, the status bar.
* cli     ``python -m headswap_gui.cli train demo DATA -o RUN --freeze full ... --threads N``
          with stderr (the CLI's ProgressPrinter) to /dev/null.

Both runs write a run folder; the figures come from its ``headswap.json`` (``epochs``: fit's own
train images/s and seconds per epoch), so both sides are measured by the same code, and the
stored ``training`` configs are compared (the bench stops if they differ). Train images/s of
a run = train images ÷ train seconds over the epochs after the first (the first is warm-up).
Sides alternate A B, B A, … so drift on a shared machine hits both; medians are reported, and
the median of the per-pair ratios. Six epochs a run by default (five measured, ~18 s): with
three (two measured, ~7 s) one pair's ratio scattered from 0.85 to 1.01 on this host, wider
than the effect measured.

Target: window / CLI ≥ 0.97 (issue 12: the window costs nothing).

    python bench/bench_gui_throughput.py                      # 3 pairs, cpu_threads 1 (the window's default here)
    python bench/bench_gui_throughput.py --threads 2          # every core to torch
    python bench/bench_gui_throughput.py --quick              # 1 pair, 2 epochs
    python bench/bench_gui_throughput.py --epochs 3           # the shorter runs of earlier records
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common

TARGET_RATIO = 0.97
HERE = Path(__file__).resolve()


def config_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """What ``headswap train`` builds from the command line below (cli._train), field by field."""
    return dict(
        epochs=args.epochs, batch_size=32, lr=1e-3, weight_decay=0.01, optimizer="adamw", schedule="cosine",
        label_smoothing=0.0, class_weights=False, grad_clip=None, freeze="full", unfreeze_after=2, last_k=1,
        augment="none", image_size=64, val_fraction=0.2, seed=0, device="cpu", precision="auto", workers=0,
        patience=None, cpu_threads=args.threads,
    )


def cli_command(args: argparse.Namespace, data: Path, run_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "headswap_gui.cli", "train", "demo", str(data), "-o", str(run_dir),
        "--freeze", "full", "--epochs", str(args.epochs), "--batch-size", "32", "--lr", "1e-3",
        "--image-size", "64", "--device", "cpu", "--precision", "auto", "--seed", "0",
        "--threads", str(args.threads),
    ]


def prepare_data(per_class: int | None) -> Path:
    """The first ``per_class`` digits of each class copied into a folder both sides scan."""
    full = _common.digits()
    if per_class is None:
        return Path(full.root)
    target = _common.DEFAULT_DATA_DIR.parent / f"digits-{per_class}-per-class"
    part = _common.subset(full, per_class)
    marker = target / ".complete"
    if not marker.exists():
        shutil.rmtree(target, ignore_errors=True)
        for sample in part.samples:
            source = Path(sample.path)
            destination = target / source.parent.name / source.name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
        marker.write_text("ok")
    return target


# -- the window side, in its own process ---------------------------------------------------------


def window_child(args: argparse.Namespace) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    work = Path(args.work)
    from headswap_gui.gui.qt_env import prepare_qt_environment

    prepare_qt_environment()
    from PySide6.QtCore import QCoreApplication, QSettings
    from PySide6.QtWidgets import QApplication

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(work / "settings"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QCoreApplication.setOrganizationName("headswap-bench")
    QCoreApplication.setApplicationName("headswap-bench-throughput")
    app = QApplication.instance() or QApplication([sys.argv[0]])
    from headswap_gui.app import apply_color_scheme

    apply_color_scheme(app)
    import torch

    from headswap_gui.core.training import TrainConfig
    from headswap_gui.gui.main_window import MainWindow
    from headswap_gui.gui.settings import AppSettings

    window = MainWindow(settings=AppSettings(), runs_root=work / "runs")
    window.resize(1400, 900)
    window.show()
    seen: dict[str, Any] = {}
    window.modelLoaded.connect(lambda *_: seen.__setitem__("model", True))
    assert window.load_model("demo")
    _common.wait_until(lambda: seen.get("model") and not window.is_loading(), 300, "the demo model")
    window.data_panel.datasetChanged.connect(lambda info: seen.__setitem__("data", info))
    window.open_data_folder(args.data)
    _common.wait_until(lambda: seen.get("data") is not None, 300, "the image folder")
    config = TrainConfig(**config_kwargs(args))
    torch.manual_seed(config.seed)  # as the CLI does before swapping the head
    gui_cpu = time.thread_time()
    gui_wall = time.perf_counter()
    assert window.start_training(config)
    (finished,) = _common.wait_for_signal(window.trainingFinished, 3600, "the end of training")  # no polling
    gui_cpu, gui_wall = time.thread_time() - gui_cpu, time.perf_counter() - gui_wall
    window.shutdown(60_000)
    # The GUI thread's own CPU time while the run lasted (this thread only: slots, layout, paint).
    print(json.dumps({"run_dir": finished.run_dir if finished else None,
                      "reason": finished.reason if finished else None,
                      "gui_cpu_s": gui_cpu, "gui_wall_s": gui_wall}), flush=True)
    return 0


# -- the parent: alternate, collect, compare -----------------------------------------------------


def run_side(side: str, args: argparse.Namespace, data: Path, work: Path, index: int) -> dict[str, Any]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    gui = (float("nan"), float("nan"))
    if side == "cli":
        run_dir = work / f"cli-{index}"
        subprocess.run(cli_command(args, data, run_dir), check=True, env=env, cwd=_common.ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        child_work = work / f"window-{index}"
        child_work.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(HERE), "--child", "window", "--work", str(child_work), "--data", str(data),
                   "--epochs", str(args.epochs), "--threads", str(args.threads)]
        done = subprocess.run(command, check=True, env=env, cwd=_common.ROOT, capture_output=True, text=True)
        line = [ln for ln in done.stdout.splitlines() if ln.startswith("{")][-1]
        report = json.loads(line)
        run_dir = Path(report["run_dir"])
        gui = (report["gui_cpu_s"], report["gui_wall_s"])
    wall = time.perf_counter() - started
    meta = json.loads((run_dir / "headswap.json").read_text())
    epochs = meta["epochs"]
    measured = epochs[1:] if len(epochs) > 1 else epochs
    n_train = len(meta["split"]["train"]) if isinstance(meta.get("split"), dict) and "train" in meta["split"] else None
    train_seconds = sum(1.0 / e["images_per_second"] for e in measured)  # per image; × n_train cancels
    return {
        "side": side,
        "ips": len(measured) / train_seconds,  # harmonic mean of per-epoch images/s = images ÷ seconds
        "epoch_ips": [e["images_per_second"] for e in epochs],
        "epoch_seconds": [e["seconds"] for e in epochs],
        "val_accuracy": [e["val_accuracy"] for e in epochs],
        "config": meta["training"],
        "n_train": n_train,
        "wall": wall,
        "gui_cpu_s": gui[0],
        "gui_wall_s": gui[1],
        "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="window/CLI pairs (alternating order)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run; the first is not measured")
    parser.add_argument("--threads", type=int, default=1, help="TrainConfig.cpu_threads on both sides")
    parser.add_argument("--per-class", type=int, default=40, help="digits per class (0: all 1,797 images)")
    parser.add_argument("--quick", action="store_true", help="1 pair, 2 epochs")
    parser.add_argument("--child", choices=["window"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "window":
        return window_child(args)
    if args.quick:
        args.pairs, args.epochs = 1, 2

    _common.header("bench_gui_throughput: train images/s, window vs headswap train (same run, same threads)")
    data = prepare_data(args.per_class or None)
    work = Path(tempfile.mkdtemp(prefix="headswap-bench-throughput-"))
    print(f"data: {data}; epochs {args.epochs} (first not measured); cpu_threads {args.threads}")
    print(f"cli:  {' '.join(cli_command(args, data, Path('RUN')))}\n", flush=True)

    results: list[dict[str, Any]] = []
    for pair in range(args.pairs):
        order = ("window", "cli") if pair % 2 == 0 else ("cli", "window")
        for side in order:
            result = run_side(side, args, data, work, pair)
            results.append(result)
            print(f"  pair {pair + 1} {side:6s}: {result['ips']:6.1f} train img/s (epochs "
                  + ", ".join(f"{v:.1f}" for v in result["epoch_ips"]) + "); epoch s "
                  + ", ".join(f"{v:.1f}" for v in result["epoch_seconds"])
                  + f"; val acc {result['val_accuracy'][-1]:.3f}; wall {result['wall']:.0f} s; load {result['load']:.2f}"
                  + (f"; GUI thread CPU {result['gui_cpu_s']:.1f} s of {result['gui_wall_s']:.0f} s "
                     f"({100 * result['gui_cpu_s'] / result['gui_wall_s']:.1f} %)" if side == "window" else ""),
                  flush=True)
    configs = {json.dumps(r["config"], sort_keys=True) for r in results}
    if len(configs) != 1:
        print("CONFIGS DIFFER:")
        for c in configs:
            print("  ", c)
        return 1
    window = [r for r in results if r["side"] == "window"]
    cli = [r for r in results if r["side"] == "cli"]
    pair_ratios = [w["ips"] / c["ips"] for w, c in zip(window, cli)]
    w_med, c_med = _common.median([r["ips"] for r in window]), _common.median([r["ips"] for r in cli])
    ratio = w_med / c_med
    print()
    print(_common.table(
        ["side", "runs", "train img/s (median)", "min–max", "epoch s (median, measured epochs)"],
        [("window", len(window), w_med, _common.spread([r["ips"] for r in window]),
          _common.median([s for r in window for s in r["epoch_seconds"][1:]])),
         ("cli", len(cli), c_med, _common.spread([r["ips"] for r in cli]),
          _common.median([s for r in cli for s in r["epoch_seconds"][1:]]))]))
    print(f"\nconfig (identical on both sides): {sorted(configs)[0]}")
    print(f"GUI thread CPU while training (window runs): "
          f"{_common.median([100 * r['gui_cpu_s'] / r['gui_wall_s'] for r in window]):.1f} % of wall time (median)")
    print(f"per-pair ratios window/cli: {', '.join(f'{x:.3f}' for x in pair_ratios)}")
    print(f"THROUGHPUT cpu_threads={args.threads}: window/cli = {ratio:.3f} (medians), "
          f"{_common.median(pair_ratios):.3f} (median of pair ratios) — target ≥ {TARGET_RATIO} "
          f"{'met' if min(ratio, _common.median(pair_ratios)) >= TARGET_RATIO else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
