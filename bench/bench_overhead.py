"""Engine overhead: ``core.training.fit`` against a minimal hand-written PyTorch loop.

Both sides train the same model (``torchvision:resnet18``, random weights, head swapped to 10
classes with the same seed) on the same images (a per-class subset of the digits demo folder,
split with ``core.data.split_samples`` and the same seed), through the same ``ImageDataset``
and eval transform, with the same batch size, device, thread count, optimizer (AdamW) and loss,
freeze ``full`` (no feature cache) and no augmentation. The baseline is written the way the
torchvision fine-tuning tutorial writes it: ``model.train()``, a ``DataLoader`` with
``shuffle=True``, ``zero_grad`` / forward / ``CrossEntropyLoss`` / ``backward`` / ``step``,
``loss.item()`` and a correct-count per step, an eval pass and a ``deepcopy`` of the best
weights per epoch.

What is timed: the training steps of every epoch after the first (the first is warm-up), from
the moment the epoch starts to the end of its last step — for ``fit`` measured from outside,
on the event stream (resume after the previous ``EpochMetrics`` → receipt of the epoch's last
``StepMetrics``), so the engine's events, schedule, metrics and throttling are all inside the
window. Validation and saving are outside it (they are reported separately as whole-epoch
time). One untimed 1-epoch run of each side comes first; then engine and baseline alternate
(A B, B A, ...) so drift on a shared machine hits both. Besides wall-clock images/s the
script prints images per CPU-second of this process (``time.process_time`` over the same
windows), which other jobs on a shared machine disturb less.

Deliberate differences, none of which changes the work per step: ``fit`` puts the backbone
at ``lr × backbone_lr_factor`` (0.1) in its own parameter groups, exempts biases and norms
from weight decay, and follows a cosine schedule with warm-up; the loop uses one AdamW group
at a constant lr. So validation accuracies differ; the table shows them only as a sanity
check that both trained.

    python bench/bench_overhead.py            # 4 rounds, ~5 min on 2 CPU cores
    python bench/bench_overhead.py --quick    # 2 rounds, smaller subset, ~1 min
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common

TARGET_RATIO = 0.97


@dataclass(frozen=True)
class Setup:
    source: str = "torchvision:resnet18"
    image_size: int = 64
    batch_size: int = 32
    epochs: int = 3  # the first is warm-up and not measured
    per_class: int | None = 40  # images per class taken from the digits (None: all 1,797)
    lr: float = 1e-3
    device: str = "cpu"
    precision: str = "fp32"  # "bf16" for the GPU check
    channels_last: bool = False
    workers: int = 0
    seed: int = 0


@dataclass
class RunResult:
    side: str
    train_seconds: list[float] = field(default_factory=list)  # measured epochs only, wall clock
    train_cpu_seconds: list[float] = field(default_factory=list)  # the same windows, this process's CPU time
    train_images: list[int] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)  # train + val + save, measured epochs
    reported_ips: list[float] = field(default_factory=list)  # fit's own EpochMetrics figure
    val_accuracy: float = float("nan")

    @property
    def images_per_second(self) -> float:
        return sum(self.train_images) / sum(self.train_seconds) if self.train_seconds else float("nan")

    @property
    def images_per_cpu_second(self) -> float:
        return sum(self.train_images) / sum(self.train_cpu_seconds) if self.train_cpu_seconds else float("nan")


def _tiny() -> Any:
    """``--source tiny``: a two-layer CNN whose compute is negligible, so the per-step cost
    left is the loop's own (plus data loading, which both sides share)."""
    from torch import nn

    from headswap_gui.core.preprocessing import Preprocessing
    from headswap_gui.core.sources import LoadedModel

    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 1000),
    )
    return LoadedModel(model.eval(), "tiny", "tiny", Preprocessing())


def _loaded(setup: Setup, class_names: tuple[str, ...]) -> Any:
    import torch

    from headswap_gui.core.sources import load_model, swap_head

    loaded = _tiny() if setup.source == "tiny" else load_model(setup.source)
    torch.manual_seed(setup.seed)
    swap_head(loaded, len(class_names), class_names=class_names)
    return loaded


def engine_run(setup: Setup, info: Any) -> RunResult:
    """Train with ``fit`` and time it from outside, on its event stream."""
    from headswap_gui.core.events import EpochMetrics, RunFinished, StepMetrics
    from headswap_gui.core.training import TrainConfig, fit

    loaded = _loaded(setup, info.class_names)
    config = TrainConfig(
        epochs=setup.epochs, batch_size=setup.batch_size, lr=setup.lr, freeze="full", augment="none",
        image_size=setup.image_size, seed=setup.seed, device=setup.device, precision=setup.precision,
        channels_last=setup.channels_last, workers=setup.workers,
    )
    result = RunResult("engine")
    n_train = _train_size(info, setup)
    events = fit(loaded, info, config, None)
    current_epoch = 0
    started_by_epoch: dict[int, float] = {}
    cpu_started_by_epoch: dict[int, float] = {}
    train_end: dict[int, float] = {}
    last_non_step_resume, last_non_step_cpu = time.perf_counter(), time.process_time()
    finished = None
    while True:
        try:
            event = next(events)
        except StopIteration:
            break
        received = time.perf_counter()
        if isinstance(event, StepMetrics):
            if event.epoch != current_epoch:
                current_epoch = event.epoch
                # the epoch began when we resumed the generator after the previous non-step event
                started_by_epoch[current_epoch] = last_non_step_resume
                cpu_started_by_epoch[current_epoch] = last_non_step_cpu
            if event.step == event.steps_per_epoch:
                _common.sync(setup.device)
                train_end[event.epoch] = time.perf_counter()
                cpu_end = time.process_time()
                images = _epoch_images(event.steps_per_epoch, setup.batch_size, n_train)
                if event.epoch > 1:
                    result.train_seconds.append(train_end[event.epoch] - started_by_epoch[event.epoch])
                    result.train_cpu_seconds.append(cpu_end - cpu_started_by_epoch[event.epoch])
                    result.train_images.append(images)
            continue
        # a non-step event: the next call to next() starts whatever comes after it
        last_non_step_resume, last_non_step_cpu = time.perf_counter(), time.process_time()
        if isinstance(event, EpochMetrics):
            if event.epoch > 1:
                result.epoch_seconds.append(received - started_by_epoch[event.epoch])
                result.reported_ips.append(event.images_per_second)
            result.val_accuracy = event.val_accuracy
        elif isinstance(event, RunFinished):
            finished = event
    if finished is None or finished.reason != "completed":
        raise SystemExit(f"the engine run did not complete: {finished}")
    return result


def _train_size(info: Any, setup: Setup) -> int:
    from headswap_gui.core.data import split_samples

    return len(split_samples(info, 0.2, setup.seed).train)


def _epoch_images(steps: int, batch: int, n_train: int) -> int:
    return min(steps * batch, n_train)


def baseline_run(setup: Setup, info: Any) -> RunResult:
    """The tutorial-style loop over the same split, transform, model and settings."""
    import torch
    from torch import nn, optim
    from torch.utils.data import DataLoader

    from headswap_gui.core.data import ImageDataset, build_transform, split_samples
    from headswap_gui.core.devices import training_threads

    loaded = _loaded(setup, info.class_names)
    model = loaded.model
    device = torch.device(setup.device)
    split = split_samples(info, 0.2, setup.seed)
    transform = build_transform(loaded.preprocessing.with_input_size(setup.image_size), "none", train=False)
    n_train = len(split.train)
    drop_last = n_train > setup.batch_size and n_train % setup.batch_size == 1  # as fit does
    loader_options: dict[str, Any] = {}
    if setup.workers > 0:
        loader_options = {"num_workers": setup.workers, "multiprocessing_context": "spawn", "persistent_workers": True}
    pin = device.type == "cuda"
    train_loader = DataLoader(ImageDataset(split.train, transform), batch_size=setup.batch_size, shuffle=True,
                              drop_last=drop_last, pin_memory=pin, **loader_options)
    val_loader = DataLoader(ImageDataset(split.val, transform), batch_size=setup.batch_size, shuffle=False,
                            pin_memory=pin, **loader_options)
    previous_threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(training_threads())  # the count fit uses
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(setup.precision) if device.type == "cuda" else None
    try:
        model.to(device)
        if setup.channels_last:
            model.to(memory_format=torch.channels_last)
        criterion = nn.CrossEntropyLoss()
        optimizer = optim.AdamW(model.parameters(), lr=setup.lr, weight_decay=0.01)
        torch.manual_seed(setup.seed)
        result = RunResult("baseline")
        best_acc, best_weights = -1.0, None
        for epoch in range(setup.epochs):
            started, cpu_started = time.perf_counter(), time.process_time()
            model.train()
            _, _, seen = _common.tutorial_train_epoch(
                model, train_loader, optimizer, criterion, device,
                pin=pin, channels_last=setup.channels_last, amp_dtype=amp_dtype)
            _common.sync(setup.device)
            train_done, cpu_done = time.perf_counter(), time.process_time()
            accuracy = _common.tutorial_accuracy(
                model, val_loader, device, pin=pin, channels_last=setup.channels_last, amp_dtype=amp_dtype)
            if accuracy > best_acc:
                best_acc, best_weights = accuracy, copy.deepcopy(model.state_dict())
            _common.sync(setup.device)
            ended = time.perf_counter()
            if epoch > 0:
                result.train_seconds.append(train_done - started)
                result.train_cpu_seconds.append(cpu_done - cpu_started)
                result.train_images.append(seen)
                result.epoch_seconds.append(ended - started)
                result.reported_ips.append(seen / (train_done - started))
            result.val_accuracy = accuracy
        del best_weights
        return result
    finally:
        for loader in (train_loader, val_loader):
            iterator = getattr(loader, "_iterator", None)
            if iterator is not None and hasattr(iterator, "_shutdown_workers"):
                iterator._shutdown_workers()
        torch.set_num_threads(previous_threads)


def compare(setup: Setup, info: Any, rounds: int, label: str = "") -> dict[str, Any]:
    """Alternate engine and baseline ``rounds`` times; print the table and the ratio lines."""
    from dataclasses import replace

    import torch

    for warm_up in (engine_run, baseline_run):  # untimed: first-run effects (allocator, page cache) hit neither side
        warm_up(replace(setup, epochs=1), info)
    runs: list[tuple[int, RunResult]] = []
    for round_index in range(rounds):
        order = ("engine", "baseline") if round_index % 2 == 0 else ("baseline", "engine")
        for side in order:
            torch.manual_seed(setup.seed)
            run = engine_run(setup, info) if side == "engine" else baseline_run(setup, info)
            runs.append((round_index + 1, run))
            print(f"  round {round_index + 1} {side:<8} {run.images_per_second:8.1f} img/s "
                  f"(epochs {', '.join(f'{s:.2f}s' for s in run.train_seconds)})", flush=True)
    rows = [
        (r, run.side, run.images_per_second, run.images_per_cpu_second, _common.median(run.train_seconds),
         _common.median(run.epoch_seconds), _common.median(run.reported_ips), run.val_accuracy)
        for r, run in runs
    ]
    print()
    print(_common.table(
        ["round", "side", "train img/s", "img per CPU-s", "train s/epoch", "epoch s (train+val+save)",
         "img/s as fit reports", "val acc"], rows))
    engine = [run.images_per_second for _, run in runs if run.side == "engine"]
    baseline = [run.images_per_second for _, run in runs if run.side == "baseline"]
    per_round = [e / b for e, b in zip(engine, baseline)]
    engine_cpu = [run.images_per_cpu_second for _, run in runs if run.side == "engine"]
    baseline_cpu = [run.images_per_cpu_second for _, run in runs if run.side == "baseline"]
    cpu_ratio = _common.median(engine_cpu) / _common.median(baseline_cpu)
    steps = math.ceil(_train_size(info, setup) / setup.batch_size)
    step_engine = _common.median(s for _, run in runs if run.side == "engine" for s in run.train_seconds) / steps
    step_base = _common.median(s for _, run in runs if run.side == "baseline" for s in run.train_seconds) / steps
    epoch_engine = _common.median(s for _, run in runs if run.side == "engine" for s in run.epoch_seconds)
    epoch_base = _common.median(s for _, run in runs if run.side == "baseline" for s in run.epoch_seconds)
    ratio = _common.median(engine) / _common.median(baseline)
    verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
    print()
    print(f"{label}engine   median {_common.median(engine):.1f} training img/s over {len(engine)} runs ({_common.spread(engine)})")
    print(f"{label}baseline median {_common.median(baseline):.1f} training img/s over {len(baseline)} runs ({_common.spread(baseline)})")
    print(f"{label}RATIO engine/baseline training img/s = {ratio:.3f} (per-round ratios {', '.join(f'{x:.3f}' for x in per_round)}; "
          f"median {_common.median(per_round):.3f}); target >= {TARGET_RATIO} — {verdict} target")
    if setup.device == "cpu":
        print(f"{label}RATIO engine/baseline training images per CPU-second (process_time; less sensitive to other "
              f"jobs on the machine) = {cpu_ratio:.3f} (per-round "
              f"{', '.join(f'{e / b:.3f}' for e, b in zip(engine_cpu, baseline_cpu))})")
    print(f"{label}per step: engine {step_engine * 1e3:.2f} ms, baseline {step_base * 1e3:.2f} ms, "
          f"difference {(step_engine - step_base) * 1e3:+.2f} ms per step of {setup.batch_size} images")
    print(f"{label}RATIO baseline/engine whole-epoch seconds (train+val+save) = {epoch_base / epoch_engine:.3f} "
          f"(engine {epoch_engine:.2f} s, baseline {epoch_base:.2f} s per epoch)")
    return {"engine": engine, "baseline": baseline, "ratio": ratio, "per_round": per_round, "cpu_ratio": cpu_ratio,
            "epoch_engine": epoch_engine, "epoch_baseline": epoch_base, "step_engine": step_engine, "step_baseline": step_base}


def profile_both(setup: Setup, info: Any) -> None:
    """cProfile one engine run and one baseline run (after a warm-up of each) and print what
    the engine does that the baseline does not: Python function calls per training step (a
    count, so it does not depend on the machine's load) and the functions whose own time
    grew most."""
    import cProfile
    import pstats

    profiled: dict[str, Any] = {}
    for side, function in (("engine", engine_run), ("baseline", baseline_run)):
        function(setup, info)  # warm-up
        profiler = cProfile.Profile()
        profiler.enable()
        run = function(setup, info)
        profiler.disable()
        profiled[side] = (pstats.Stats(profiler), run)
    steps_per_run = setup.epochs * math.ceil(_train_size(info, setup) / setup.batch_size)
    print(f"\nprofile ({setup.epochs} epochs = {steps_per_run} training steps per run, plus validation):")
    for side, (stats, run) in profiled.items():
        print(f"  {side:<8} {stats.total_calls:>10,} function calls, {stats.total_tt:6.2f} s profiled, "
              f"{run.images_per_second:8.1f} img/s under the profiler")
    engine_stats, baseline_stats = profiled["engine"][0], profiled["baseline"][0]
    extra = (engine_stats.total_calls - baseline_stats.total_calls) / steps_per_run
    print(f"  engine - baseline: {extra:+.0f} function calls per training step, "
          f"{(engine_stats.total_tt - baseline_stats.total_tt) / steps_per_run * 1e3:+.2f} ms per step (profiled time, noisy)")
    base = baseline_stats.stats  # type: ignore[attr-defined]
    growth = []
    for key, (_cc, calls, own, _cum, _callers) in engine_stats.stats.items():  # type: ignore[attr-defined]
        before = base.get(key, (0, 0, 0.0, 0.0, {}))
        growth.append((own - before[2], calls - before[1], key))
    growth.sort(reverse=True)
    print("  functions with the most extra own time in the engine run:")
    for own, calls, (file, line, name) in growth[:12]:
        where = f"{Path(file).name}:{line}" if line else file
        print(f"    {own * 1e3:+8.1f} ms  {calls:+7d} calls  {name} ({where})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 rounds, 2 epochs, 24 images per class")
    parser.add_argument("--rounds", type=int, default=None, help="A/B rounds (default 4; --quick 2); even keeps the order balanced")
    parser.add_argument("--source", default=Setup.source,
                        help="model source (default %(default)s); 'tiny' = a 2-layer CNN that isolates the loop's own cost")
    parser.add_argument("--image-size", type=int, default=Setup.image_size)
    parser.add_argument("--batch-size", type=int, default=Setup.batch_size)
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run, the first is warm-up (default 3; --quick 2)")
    parser.add_argument("--per-class", type=int, default=None, help="images per class (default 40; --quick 24; 0: all)")
    parser.add_argument("--data", default=None, help="where to write the digits (default: a temp folder)")
    parser.add_argument("--profile", action="store_true", help="also cProfile one engine and one baseline run and compare them")
    args = parser.parse_args(argv)

    _common.header("bench_overhead: fit vs a tutorial-style PyTorch loop (freeze full, no cache)")
    _common.warm_imports()
    per_class = args.per_class if args.per_class is not None else (24 if args.quick else 40)
    setup = Setup(
        source=args.source, image_size=args.image_size, batch_size=args.batch_size,
        epochs=args.epochs or (2 if args.quick else 3), per_class=per_class or None,
    )
    rounds = args.rounds or (2 if args.quick else 4)
    info = _common.subset(_common.digits(args.data), setup.per_class)
    n_train = _train_size(info, setup)
    print(f"setup: {setup.source}, image {setup.image_size}px, batch {setup.batch_size}, {n_train} train images "
          f"({math.ceil(n_train / setup.batch_size)} steps/epoch), {setup.epochs} epochs per run (first = warm-up), "
          f"{rounds} rounds, device {setup.device}", flush=True)
    compare(setup, info, rounds)
    if args.profile:
        profile_both(setup, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
