"""Time to 90 % validation accuracy, head-only fine-tuning of ``demo`` on the digits.

Engine: ``load_model("demo")``, ``swap_head``, ``fit`` with ``freeze="head"`` (so the feature
cache is used automatically), ``lr=training.suggested_lr("head")``, stopped at the first epoch
whose validation accuracy reaches the target.

Baselines, in the torchvision fine-tuning tutorial's "feature extraction" style: the same
``load_model("demo")``, ``requires_grad=False`` on every parameter, a new ``nn.Linear`` head,
AdamW over the head's parameters at the same lr (constant), the same image size, the same
split (``split_samples`` with the same seed) and transform, a forward through the whole model
every step, an eval pass after every epoch; stopped at the first epoch that reaches the
target. Two variants, because the tutorial's ``model.train()`` matters here:

- ``loop, model.train()`` — exactly as the tutorial: the frozen backbone's BatchNorm layers
  use batch statistics and keep updating their running statistics, dropout is on. On the
  digits this plateaus near 75 % (measured), so it gets a short epoch limit and its time is a
  lower bound.
- ``loop, frozen in eval`` — the same loop with the model left in eval mode (what ``fit``
  does for ``freeze="head"``); it reaches the target, and is the fair speed comparison.

Both clocks start before ``load_model`` and include everything after it (loading, head swap,
fit's preparation and feature cache, training, evaluation). Scanning the image folder is done
once beforehand and is in neither. Imports and one untimed ``load_model("demo")`` come first so
neither side pays for a cold import or a cold page cache. The order of the sides alternates
between repeats.

    python bench/bench_time_to_accuracy.py            # image sizes 64 and 128
    python bench/bench_time_to_accuracy.py --quick    # image size 64 only
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import _common

TARGET_SPEEDUPS = {64: 8.0, 128: 6.0}  # issue 12; other sizes are held to the 128 px figure
_NOTES_SHOWN: set[str] = set()


@dataclass(frozen=True)
class Setup:
    source: str = "demo"
    image_size: int = 64
    target: float | None = 0.90  # None: run max_epochs and time that instead
    max_epochs: int = 10
    batch_size: int = 32
    device: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = False
    engine_defaults: bool = False  # the engine picks its own memory layout and precision (channels-last on CPU;
    # a bf16 feature pass on CPUs with bf16 matrix units); the loops stay in fp32 as the tutorial writes them
    workers: int = 0
    seed: int = 0
    baseline_mode: str = "tutorial"  # "tutorial": model.train(); "frozen-eval": the model stays in eval mode


BASELINES = ("frozen-eval", "tutorial")
BASELINE_LABELS = {"frozen-eval": "loop, frozen in eval", "tutorial": "loop, model.train()"}


@dataclass
class Result:
    side: str
    seconds: float = float("nan")  # to the target (or to max_epochs when target is None)
    reached: bool = False
    epochs: int = 0
    load_seconds: float = float("nan")
    cache_seconds: float = float("nan")  # engine only
    cache_cpu_seconds: float = float("nan")  # the same window in this process's CPU time
    epoch_seconds: list[float] = field(default_factory=list)  # after load/cache: train + eval per epoch
    accuracies: list[float] = field(default_factory=list)
    streamed: list[tuple[int, int, float]] = field(default_factory=list)  # engine: (cached, total, val acc) while caching


def engine_time(setup: Setup, info: Any) -> Result:
    import torch

    from headswap_gui.core import feature_cache
    from headswap_gui.core.events import CacheValidation, EpochMetrics, Note, Progress, RunFinished, RunStarted
    from headswap_gui.core.sources import load_model, swap_head
    from headswap_gui.core.training import TrainConfig, fit, suggested_lr

    result = Result("engine")
    _common.sync(setup.device)
    started = time.perf_counter()
    loaded = load_model(setup.source)
    torch.manual_seed(setup.seed)
    heads = swap_head(loaded, len(info.class_names), class_names=info.class_names)  # passed on, as the CLI does
    result.load_seconds = time.perf_counter() - started
    config = TrainConfig(
        epochs=setup.max_epochs, batch_size=setup.batch_size, lr=suggested_lr("head"), freeze="head",
        augment="none", image_size=setup.image_size, seed=setup.seed, device=setup.device,
        precision="auto" if setup.engine_defaults else setup.precision, workers=setup.workers,
        channels_last=None if setup.engine_defaults else setup.channels_last,
    )
    events = fit(loaded, info, config, None, heads=heads)
    cache_started = cache_done = last = None
    cpu_started = cpu_done = float("nan")
    cached = False
    try:
        for event in events:
            now = time.perf_counter()
            if isinstance(event, RunStarted):
                cached = event.features_cached
                last = now
            elif isinstance(event, Progress) and event.stage == feature_cache.CACHE_STAGE:
                if cache_started is None:
                    cache_started, cpu_started = now, time.process_time()
                if event.done == event.total:
                    cache_done, cpu_done = now, time.process_time()
                    last = now
            elif isinstance(event, CacheValidation):
                # The head, trained on the features cached so far, measured on the whole
                # validation split: the run's own model at that moment, as at an epoch's end.
                result.accuracies.append(event.val_accuracy)
                result.streamed.append((event.cached, event.total, event.val_accuracy))
                if setup.target is not None and event.val_accuracy >= setup.target:
                    result.reached = True
                    break
            elif isinstance(event, EpochMetrics):
                _common.sync(setup.device)
                now = time.perf_counter()
                result.epochs = event.epoch
                result.accuracies.append(event.val_accuracy)
                result.epoch_seconds.append(now - last)
                last = now
                if setup.target is not None and event.val_accuracy >= setup.target:
                    result.reached = True
                    break
            elif isinstance(event, Note) and event.message not in _NOTES_SHOWN:
                _NOTES_SHOWN.add(event.message)  # what the engine chose, e.g. a bf16 feature pass
                print(f"  engine note: {event.message}", flush=True)
            elif isinstance(event, RunFinished) and event.reason not in ("completed", "early-stopped"):
                raise SystemExit(f"the engine run failed: {event.message}")
    finally:
        events.close()  # runs fit's cleanup (threads restored, loaders closed)
    result.seconds = time.perf_counter() - started
    if setup.target is None:
        result.reached = True
    if not cached:
        print("  note: the engine did not cache features for this model", flush=True)
    if cache_started is not None and cache_done is not None:
        result.cache_seconds = cache_done - cache_started
        result.cache_cpu_seconds = cpu_done - cpu_started
    return result


def baseline_time(setup: Setup, info: Any) -> Result:
    import torch
    from torch import nn, optim
    from torch.utils.data import DataLoader

    from headswap_gui.core.data import ImageDataset, build_transform, split_samples
    from headswap_gui.core.devices import training_threads
    from headswap_gui.core.sources import load_model
    from headswap_gui.core.training import suggested_lr

    result = Result(setup.baseline_mode)
    device = torch.device(setup.device)
    previous_threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(training_threads())  # the count fit uses
    pin = device.type == "cuda"
    loader_options: dict[str, Any] = {}
    if setup.workers > 0:
        loader_options = {"num_workers": setup.workers, "multiprocessing_context": "spawn", "persistent_workers": True}
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(setup.precision) if device.type == "cuda" else None
    loaders: list[Any] = []
    try:
        _common.sync(setup.device)
        started = time.perf_counter()
        loaded = load_model(setup.source)
        model = loaded.model
        for param in model.parameters():
            param.requires_grad = False
        head_name = "fc" if isinstance(getattr(model, "fc", None), nn.Linear) else "classifier"
        old_head = getattr(model, head_name)
        torch.manual_seed(setup.seed)
        setattr(model, head_name, nn.Linear(old_head.in_features, len(info.class_names)))
        model.to(device)
        if setup.channels_last:
            model.to(memory_format=torch.channels_last)
        params_to_update = [p for p in model.parameters() if p.requires_grad]
        optimizer = optim.AdamW(params_to_update, lr=suggested_lr("head"), weight_decay=0.01)
        criterion = nn.CrossEntropyLoss()
        split = split_samples(info, 0.2, setup.seed)
        transform = build_transform(loaded.preprocessing.with_input_size(setup.image_size), "none", train=False)
        train_loader = DataLoader(ImageDataset(split.train, transform), batch_size=setup.batch_size, shuffle=True,
                                  pin_memory=pin, **loader_options)
        val_loader = DataLoader(ImageDataset(split.val, transform), batch_size=setup.batch_size, shuffle=False,
                                pin_memory=pin, **loader_options)
        loaders = [train_loader, val_loader]
        _common.sync(setup.device)
        result.load_seconds = time.perf_counter() - started
        last = time.perf_counter()
        for epoch in range(setup.max_epochs):
            # The tutorial calls model.train(): the frozen backbone's BatchNorm layers then
            # normalise with batch statistics and keep updating their running statistics, and
            # dropout is on. "frozen-eval" keeps the whole model in eval mode instead (the
            # new Linear head behaves the same in both modes), as fit does for freeze="head".
            model.train(setup.baseline_mode == "tutorial")
            _common.tutorial_train_epoch(
                model, train_loader, optimizer, criterion, device,
                pin=pin, channels_last=setup.channels_last, amp_dtype=amp_dtype)
            accuracy = _common.tutorial_accuracy(
                model, val_loader, device, pin=pin, channels_last=setup.channels_last, amp_dtype=amp_dtype)
            _common.sync(setup.device)
            now = time.perf_counter()
            result.epoch_seconds.append(now - last)
            last = now
            result.epochs = epoch + 1
            result.accuracies.append(accuracy)
            if setup.target is not None and accuracy >= setup.target:
                result.reached = True
                break
        result.seconds = time.perf_counter() - started
        if setup.target is None:
            result.reached = True
        return result
    finally:
        for loader in loaders:
            iterator = getattr(loader, "_iterator", None)
            if iterator is not None and hasattr(iterator, "_shutdown_workers"):
                iterator._shutdown_workers()
        torch.set_num_threads(previous_threads)


def compare(setup: Setup, info: Any, repeats: int, baselines: dict[str, int], label: str = "") -> dict[str, Any]:
    """Run the engine and each baseline (mode -> its epoch limit) ``repeats`` times, in
    alternating order; print the table and one SPEED-UP line per baseline."""
    from dataclasses import replace

    sides = ["engine", *baselines]
    results: list[Result] = []
    for repeat in range(repeats):
        for side in sides if repeat % 2 == 0 else list(reversed(sides)):
            if side == "engine":
                run = engine_time(setup, info)
            else:
                run = baseline_time(replace(setup, baseline_mode=side, max_epochs=baselines[side]), info)
            results.append(run)
            accs = " ".join(f"{a:.2%}" for a in run.accuracies)
            name = BASELINE_LABELS.get(side, side)
            where = f"{run.epochs} epochs"
            if run.streamed:
                cached, total, _ = run.streamed[-1]
                where += f" + the cache pass to {cached}/{total} training images"
            print(f"  {label}{name:<21} {run.seconds:7.2f} s, {'reached' if run.reached else 'NOT reached'} after "
                  f"{where} (val acc: {accs})", flush=True)
    rows = [
        (BASELINE_LABELS.get(r.side, r.side), r.seconds, "yes" if r.reached else "no", r.epochs, r.load_seconds,
         r.cache_seconds, _common.median(r.epoch_seconds), max(r.accuracies) if r.accuracies else float("nan"))
        for r in results
    ]
    print()
    print(_common.table(["side", "seconds", "reached", "epochs", "load s", "cache s", "s/epoch", "best val acc"], rows))
    goal = f"{setup.target:.0%} val accuracy" if setup.target is not None else f"{setup.max_epochs} epochs"
    engine = [r.seconds for r in results if r.side == "engine"]
    engine_reached = all(r.reached for r in results if r.side == "engine")
    epoch_engine = _common.median(s for r in results if r.side == "engine" for s in r.epoch_seconds)
    print()
    print(f"{label}engine median {_common.median(engine):.2f} s to {goal} ({_common.spread(engine)}); "
          f"{'reached' if engine_reached else 'NOT reached'}")
    summary: dict[str, Any] = {"engine": engine, "engine_reached": engine_reached}
    for side, limit in baselines.items():
        times = [r.seconds for r in results if r.side == side]
        reached = all(r.reached for r in results if r.side == side)
        speedup = _common.median(times) / _common.median(engine)
        if not engine_reached:
            note = " (not meaningful: the engine did not reach the target)"
        elif not reached:
            note = f" (a lower bound: this loop did not reach the target within {limit} epochs)"
        else:
            note = ""
        target_speedup = TARGET_SPEEDUPS.get(setup.image_size, 6.0)
        verdict = "meets" if speedup >= target_speedup and engine_reached and reached else "BELOW"
        if not reached and engine_reached and speedup >= target_speedup:
            verdict = "meets (as a lower bound)"
        verdict = f"target >= {target_speedup:g}x — {verdict} target" if setup.target is not None else "no accuracy target (fixed epochs)"
        epoch_base = _common.median(s for r in results if r.side == side for s in r.epoch_seconds)
        name = BASELINE_LABELS[side]
        print(f"{label}{name} median {_common.median(times):.2f} s ({_common.spread(times)}); "
              f"{'reached' if reached else 'NOT reached'}")
        print(f"{label}SPEED-UP vs {name}: {speedup:.2f}x to {goal}{note}; {verdict}")
        if epoch_engine == epoch_engine:  # not NaN: the engine ran epochs (not only the cache pass)
            print(f"{label}  per epoch after setup: engine {epoch_engine:.3f} s (cached features), {name} {epoch_base:.2f} s "
                  f"(whole model) — {epoch_base / epoch_engine:.0f}x per extra epoch")
        else:
            print(f"{label}  the engine reached the target during the cache pass, before its first epoch; "
                  f"{name}: {epoch_base:.2f} s per epoch (whole model)")
        summary[side] = {"times": times, "reached": reached, "speedup": speedup}
    return summary


def cache_vs_forward(setup: Setup, info: Any, repeats: int) -> float:
    """``--cache-check``: fit's feature-cache pass against one plain ``no_grad`` eval forward
    over the same images (train + val, same transform, batch, device, threads). The cache
    pass is the floor of the engine's time to accuracy; this shows whether it costs more
    than the forward it replaces. Returns the ratio cache / plain."""
    from dataclasses import replace

    import torch
    from torch.utils.data import DataLoader

    from headswap_gui.core.data import ImageDataset, build_transform, split_samples
    from headswap_gui.core.devices import training_threads
    from headswap_gui.core.sources import load_model

    cache, plain, cache_cpu, plain_cpu = [], [], [], []
    for repeat in range(repeats):
        for side in ("engine", "plain") if repeat % 2 == 0 else ("plain", "engine"):
            if side == "engine":
                run = engine_time(replace(setup, target=None, max_epochs=1), info)
                cache.append(run.cache_seconds)
                cache_cpu.append(run.cache_cpu_seconds)
                continue
            loaded = load_model(setup.source)
            model = loaded.model.to(setup.device).eval()
            split = split_samples(info, 0.2, setup.seed)
            transform = build_transform(loaded.preprocessing.with_input_size(setup.image_size), "none", train=False)
            loader = DataLoader(ImageDataset(split.train + split.val, transform), batch_size=setup.batch_size)
            previous = torch.get_num_threads()
            torch.set_num_threads(training_threads())
            try:
                started, cpu_started = time.perf_counter(), time.process_time()
                with torch.no_grad():
                    for images, _labels in loader:
                        model(images.to(setup.device))
                _common.sync(setup.device)
                plain.append(time.perf_counter() - started)
                plain_cpu.append(time.process_time() - cpu_started)
            finally:
                torch.set_num_threads(previous)
    ratio = _common.median(cache) / _common.median(plain)
    print(f"[{setup.image_size}px] cache pass {_common.median(cache):.2f} s ({_common.spread(cache)}), plain no_grad forward over "
          f"the same {len(info.samples)} images {_common.median(plain):.2f} s ({_common.spread(plain)}); "
          f"RATIO cache/plain = {ratio:.3f}; in CPU time {_common.median(cache_cpu):.2f} s vs {_common.median(plain_cpu):.2f} s, "
          f"RATIO {_common.median(cache_cpu) / _common.median(plain_cpu):.3f}", flush=True)
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="image size 64 only; the model.train() loop capped at 3 epochs")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="image sizes (default 64 128)")
    parser.add_argument("--repeats", type=int, default=1, help="repeats per size (default %(default)s)")
    parser.add_argument("--target", type=float, default=0.90)
    parser.add_argument("--max-epochs", type=int, default=10, help="epoch limit of the engine and the eval-mode loop")
    parser.add_argument("--tutorial-max-epochs", type=int, default=None,
                        help="epoch limit of the model.train() loop (default 4; --quick 3): it plateaus below 90 %% on "
                             "the digits, so its time is a lower bound either way")
    parser.add_argument("--baselines", nargs="+", default=list(BASELINES), choices=list(BASELINES))
    parser.add_argument("--engine-defaults", action="store_true",
                        help="let the engine use its defaults (channels-last layout; precision auto, a bf16 feature pass on CPUs "
                             "with bf16 matrix units); the loops stay as the tutorial writes them (fp32)")
    parser.add_argument("--source", default="demo")
    parser.add_argument("--cache-check", action="store_true",
                        help="instead: time fit's feature-cache pass against a plain no_grad forward over the same images")
    parser.add_argument("--data", default=None, help="where to write the digits (default: a temp folder)")
    args = parser.parse_args(argv)

    _common.header("bench_time_to_accuracy: head-only fine-tuning, engine (feature cache) vs tutorial-style loops")
    _common.warm_imports()
    from headswap_gui.core.sources import load_model

    load_model(args.source)  # untimed: imports and page cache warm for both sides
    info = _common.digits(args.data)
    sizes = args.sizes or ([64] if args.quick else [64, 128])
    tutorial_limit = args.tutorial_max_epochs or (3 if args.quick else 4)
    limits = {"frozen-eval": args.max_epochs, "tutorial": tutorial_limit}
    baselines = {side: limits[side] for side in args.baselines}
    if args.cache_check:
        for size in sizes:
            cache_vs_forward(Setup(source=args.source, image_size=size), info, max(args.repeats, 3))
        return 0
    summary = []
    for size in sizes:
        setup = Setup(source=args.source, image_size=size, target=args.target, max_epochs=args.max_epochs,
                      engine_defaults=args.engine_defaults)
        print(f"\n-- {args.source}, image {size}px, target {args.target:.0%}, {len(info.samples)} images "
              f"(80/20 split, seed 0), epoch limits: engine {args.max_epochs}, "
              + ", ".join(f"{BASELINE_LABELS[s]} {n}" for s, n in baselines.items())
              + f", {args.repeats} repeat(s)", flush=True)
        outcome = compare(setup, info, args.repeats, baselines, label=f"[{size}px] ")
        for side in baselines:
            summary.append((f"{size}px", BASELINE_LABELS[side], _common.median(outcome["engine"]),
                            _common.median(outcome[side]["times"]), "yes" if outcome[side]["reached"] else "no",
                            f"{outcome[side]['speedup']:.2f}x" + ("" if outcome[side]["reached"] else " (lower bound)")))
    print()
    print(_common.table(["image size", "baseline", "engine s", "baseline s", "baseline reached", "speed-up"], summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
