"""Resident memory across a 5-epoch run: does it keep growing after the first epoch?

Each configuration runs in a fresh child process (so one run's memory does not hide
another's) and samples the process's resident set size (psutil where installed, else
``/proc/self/status`` VmRSS, with VmHWM as the peak) when ``fit`` starts and at every
``EpochMetrics`` event. The runs write a real run folder (checkpoint, metrics, metadata every
epoch) as the CLI does.

- ``demo-head``: ``demo``, freeze ``head`` (feature cache), image 64, all 1,797 digits
- ``full-small``: ``torchvision:mobilenet_v3_small`` (random weights), freeze ``full``, image
  64, all 1,797 digits

Pass/fail: the largest RSS sampled after epochs 2..5 is less than 5 % above the RSS after
epoch 1.

    python bench/bench_memory.py            # both configurations, 5 epochs
    python bench/bench_memory.py --quick    # both, 3 epochs, full-small on 40 images per class
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common

LIMIT = 0.05
CONFIGS = {
    "demo-head": {"source": "demo", "freeze": "head", "lr": 1e-2, "per_class": None},
    "full-small": {"source": "torchvision:mobilenet_v3_small", "freeze": "full", "lr": 1e-3, "per_class": None},
}


def child(name: str, epochs: int, per_class: int | None, data: str | None) -> dict[str, Any]:
    import torch

    from headswap_gui.core.events import EpochMetrics, RunFinished, RunStarted
    from headswap_gui.core.sources import load_model, swap_head
    from headswap_gui.core.training import TrainConfig, fit

    spec = CONFIGS[name]
    info = _common.subset(_common.digits(data), per_class if per_class is not None else spec["per_class"])
    samples: list[dict[str, Any]] = []

    def sample(label: str) -> None:
        rss, peak = _common.rss_bytes()
        samples.append({"at": label, "rss": rss, "peak": peak, "time": time.perf_counter()})

    sample("start")
    loaded = load_model(spec["source"])
    torch.manual_seed(0)
    swap_head(loaded, len(info.class_names), class_names=info.class_names)
    sample("model loaded")
    config = TrainConfig(epochs=epochs, batch_size=32, lr=spec["lr"], freeze=spec["freeze"], augment="none",
                         image_size=64, seed=0, device="cpu")
    finished = None
    with tempfile.TemporaryDirectory(prefix="headswap-bench-mem-") as folder:
        for event in fit(loaded, info, config, Path(folder) / "run"):
            if isinstance(event, RunStarted):
                sample("run started")
            elif isinstance(event, EpochMetrics):
                sample(f"epoch {event.epoch}")
            elif isinstance(event, RunFinished):
                finished = event
        sample("finished")
    return {"name": name, "samples": samples, "reason": finished.reason if finished else None,
            "images": len(info.samples), "rss_source": _rss_source()}


def _rss_source() -> str:
    try:
        import psutil  # type: ignore[import-not-found]  # noqa: F401

        return "psutil"
    except ImportError:
        return "/proc/self/status"


def report(result: dict[str, Any]) -> dict[str, Any]:
    samples = result["samples"]
    print(f"\n-- {result['name']} ({CONFIGS[result['name']]['source']}, freeze {CONFIGS[result['name']]['freeze']}, "
          f"{result['images']} images, RSS from {result['rss_source']}); run ended: {result['reason']}")
    print(_common.table(["at", "RSS MiB", "peak (HWM) MiB"], [(s["at"], _common.mib(s["rss"]), _common.mib(s["peak"])) for s in samples]))
    epochs = [s for s in samples if s["at"].startswith("epoch ")]
    first = epochs[0]
    later = epochs[1:]
    max_later = max(s["rss"] for s in later) if later else first["rss"]
    growth = max_later / first["rss"] - 1.0
    peak_growth = later[-1]["peak"] / first["peak"] - 1.0 if later else 0.0
    verdict = "meets" if growth < LIMIT else "EXCEEDS"
    print(f"{result['name']}: RSS after epoch 1 {_common.mib(first['rss']):.1f} MiB; max after it {_common.mib(max_later):.1f} MiB; "
          f"GROWTH {growth:+.2%} = {_common.mib(max_later - first['rss']):+.1f} MiB (limit < {LIMIT:.0%}) — {verdict} limit; "
          f"peak (HWM) {_common.mib(first['peak']):.1f} → {_common.mib(later[-1]['peak'] if later else first['peak']):.1f} MiB ({peak_growth:+.2%})")
    return {"name": result["name"], "rss_epoch1": first["rss"], "max_after": max_later, "growth": growth, "peak_growth": peak_growth}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 epochs; full-small on 40 images per class")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 5; --quick 3)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--data", default=None, help="where to write the digits (default: a temp folder)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--per-class", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    epochs = args.epochs or (3 if args.quick else 5)
    if args.child:
        print(json.dumps(child(args.child, epochs, args.per_class, args.data)))
        return 0

    _common.header("bench_memory: RSS at every epoch of a run, each configuration in its own process")
    _common.digits(args.data)  # written once, before the children start
    summaries = []
    for name in args.configs:
        command = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--epochs", str(epochs)]
        if args.quick and name == "full-small":
            command += ["--per-class", "40"]
        if args.data:
            command += ["--data", args.data]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            raise SystemExit(f"{name} failed")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        summaries.append(report(result))
        print(f"({time.perf_counter() - started:.0f} s)", flush=True)
    print()
    print(_common.table(
        ["run", "RSS epoch 1 MiB", "max RSS epochs 2+ MiB", "growth", "growth MiB", "peak growth"],
        [(s["name"], _common.mib(s["rss_epoch1"]), _common.mib(s["max_after"]), f"{s['growth']:+.2%}",
          f"{_common.mib(s['max_after'] - s['rss_epoch1']):+.1f}", f"{s['peak_growth']:+.2%}")
         for s in summaries],
    ))
    worst = max(s["growth"] for s in summaries)
    print(f"RSS GROWTH after epoch 1: worst {worst:+.2%} (limit < {LIMIT:.0%}) — {'meets' if worst < LIMIT else 'EXCEEDS'} limit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
