"""The GPU check: benchmarks 1 and 2 on CUDA with a ResNet-50, bf16 autocast, channels-last
and 4 spawned DataLoader workers — ``fit`` against the same plain PyTorch loops, measured in
the same run.

1. Overhead (``bench_overhead``): ``torchvision:resnet50`` (random weights), freeze ``full``,
   image 224, batch 64, all 1,797 digits (1,437 train), 6 epochs per run (the first is
   warm-up), engine and loop alternating over 4 rounds. Prints training images/s of both and
   the ratio engine/loop. Both use the same DataLoader settings (workers=4 spawn, persistent,
   pinned memory); the loop calls ``loss.item()`` every step as the tutorial does, ``fit``
   does not synchronise per step on CUDA.
2. Head-only (``bench_time_to_accuracy``): (a) ``torchvision:resnet50`` (random weights, so
   no accuracy target): wall time for 5 head-only epochs, engine (feature cache) vs the loop
   with the frozen model in eval mode; (b) ``demo`` to 90 % validation accuracy at image
   sizes 64 and 128, engine vs both tutorial-style loops.

On a machine without CUDA it says so and exits with status 0 without measuring anything.

    python bench/bench_cuda.py --cuda                  # the full check (estimated ~5 min on one GPU; not yet run)
    python bench/bench_cuda.py --cuda --quick          # 2 rounds, demo at 64 only
    python bench/bench_cuda.py --cuda --json FILE      # also write the figures as JSON
    python bench/bench_cuda.py --cpu-dry-run           # exercise this script's code paths on the CPU
                                                       # with tiny settings (not a measurement)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import _common


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuda", action="store_true", help="run the GPU check (needs CUDA)")
    parser.add_argument("--quick", action="store_true", help="2 overhead rounds; demo at image size 64 only")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file (default: $OUT/bench_cuda.json when $OUT is set)")
    parser.add_argument("--data", default=None, help="where to write the digits (default: a temp folder)")
    parser.add_argument("--cpu-dry-run", action="store_true", help="run every code path on the CPU with tiny settings")
    args = parser.parse_args(argv)
    if not (args.cuda or args.cpu_dry_run):
        parser.print_help()
        print("\nnothing to do: pass --cuda (or --cpu-dry-run)")
        return 2

    import torch

    if args.cuda and not torch.cuda.is_available():
        print(f"bench_cuda: CUDA is not available on this machine (torch {torch.__version__}, "
              f"built for CUDA {torch.version.cuda or 'none'}); nothing was measured. "
              "Run this script on a machine with an NVIDIA GPU.")
        return 0

    import bench_overhead
    import bench_time_to_accuracy

    dry = args.cpu_dry_run and not args.cuda
    device = "cpu" if dry else "cuda"
    _common.header("bench_cuda: fit vs plain PyTorch loops on CUDA (bf16, channels-last, 4 spawned workers)"
                   + (" — CPU DRY RUN, NOT A MEASUREMENT" if dry else ""), device=device)
    if not dry:
        torch.backends.cudnn.benchmark = True  # both sides alike
        print(f"GPU: {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
              f"bf16 supported: {torch.cuda.is_bf16_supported()}", flush=True)
    _common.warm_imports()
    info_all = _common.digits(args.data)
    figures: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": _common.machine_line(device),
                                  "dry_run": dry}
    # the dry run passes the same settings; fit ignores bf16 and channels-last on the CPU (with a note)
    gpu = {"device": device, "precision": "bf16", "channels_last": True, "workers": 2 if dry else 4}

    # 1. overhead -----------------------------------------------------------------------------
    overhead = bench_overhead.Setup(
        source="tiny" if dry else "torchvision:resnet50", image_size=32 if dry else 224, batch_size=32 if dry else 64,
        epochs=2 if dry else 6, per_class=20 if dry else None, **gpu,
    )
    rounds = 1 if dry else (2 if args.quick else 4)
    info = _common.subset(info_all, overhead.per_class)
    print(f"\n== 1. overhead: {overhead.source}, freeze full, image {overhead.image_size}, batch {overhead.batch_size}, "
          f"{overhead.epochs} epochs per run (first = warm-up), {rounds} rounds, {overhead.precision}, "
          f"channels-last {overhead.channels_last}, workers {overhead.workers} (spawn)", flush=True)
    outcome = bench_overhead.compare(overhead, info, rounds, label="[cuda] " if not dry else "[dry] ")
    figures["overhead"] = {"setup": asdict(overhead), "rounds": rounds,
                           **{k: v for k, v in outcome.items() if isinstance(v, (int, float, list))}}

    # 2a. head-only, resnet50 random weights, fixed epochs -------------------------------------------
    head = bench_time_to_accuracy.Setup(
        source="demo" if dry else "torchvision:resnet50",
        image_size=32 if dry else 224, target=None, max_epochs=2 if dry else 5,
        batch_size=32 if dry else 64, **gpu,
    )
    print(f"\n== 2a. head-only, {head.source}{' (random weights)' if not dry else ''}, {head.max_epochs} epochs, "
          f"image {head.image_size}, batch {head.batch_size} (no accuracy target: time for the epochs)", flush=True)
    fixed = bench_time_to_accuracy.compare(head, info_all, 1, {"frozen-eval": head.max_epochs},
                                           label="[cuda] " if not dry else "[dry] ")
    figures["head_only_fixed_epochs"] = {"setup": asdict(head), **_plain(fixed)}

    # 2b. time to 90 % with the pretrained demo ---------------------------------------------------
    sizes = [32] if dry else ([64] if args.quick else [64, 128])
    figures["time_to_accuracy"] = {}
    for size in sizes:
        demo = bench_time_to_accuracy.Setup(
            source="demo", image_size=size, target=None if dry else 0.90, max_epochs=2 if dry else 10,
            batch_size=32, **gpu,
        )
        limits = {"frozen-eval": demo.max_epochs, "tutorial": 2 if dry else 5}
        print(f"\n== 2b. demo head-only to {'2 epochs' if dry else '90 % val accuracy'}, image {size}, batch 32", flush=True)
        result = bench_time_to_accuracy.compare(demo, info_all, 1, limits, label=f"[{'dry' if dry else 'cuda'} {size}px] ")
        figures["time_to_accuracy"][str(size)] = {"setup": asdict(demo), **_plain(result)}  # type: ignore[index]

    target = args.json or (str(Path(os.environ["OUT"]) / "bench_cuda.json") if os.environ.get("OUT") else None)
    if target:
        Path(target).write_text(json.dumps(figures, indent=2, default=str))
        print(f"\nfigures written to {target}")
    return 0


def _plain(summary: dict[str, object]) -> dict[str, object]:
    """The JSON-ready part of a ``bench_time_to_accuracy.compare`` summary."""
    return {key: value for key, value in summary.items() if key != "results"}


if __name__ == "__main__":
    sys.exit(main())
