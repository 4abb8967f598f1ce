"""The feature cache, filled while the head already learns from it.

With a frozen backbone the one pass that fills the feature cache is most of a run's time
(9.2 of 10.8 s on the digits demo). Instead of waiting for it, the pass runs over the
validation images first and then over the training images in a shuffled order, and at chunk
boundaries that double (64, 128, 256, … cached images) the head takes a few passes over
everything cached so far and is measured on the whole validation split: a
:class:`CacheValidation` event, so validation accuracy appears and rises during the pass.
When the cache is full the epochs train on it as before, starting from the streamed head.

Everything here is a function of the seed and the image counts (chunk boundaries, pass
counts, shuffles), never of timing, so a run repeats exactly. Under torchrun each rank runs
the backbone over its part of every batch and the parts are gathered, so every rank holds the
whole cache in the single-process order and the head learns on every rank as it would in one
process (it is small; the backbone pass is what the ranks share). The head learns with its own
optimizer at the configured learning rate, held constant: the run's schedule (warm-up from
zero, cosine) belongs to the epochs that follow and starts fresh there.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import feature_cache
from .data import ImageDataset, ImageSample
from .distributed import AgreedStop, Group, batch_slices
from .evaluation import validate
from .events import CacheValidation, Event, Note, Progress
from .feature_cache import CachedSplit
from .loaders import OrderSampler, close_loader, epoch_order, make_loader
from .train_steps import Optimisation, drain, train_one_epoch

FIRST_CHUNK = 64  # training images cached before the head's first passes; then × GROWTH
GROWTH = 1.5
PASSES = 6  # passes over everything cached so far, after each chunk ...
MIN_STEPS = 60  # ... but at least this many steps, so the first small chunks teach something
LR_FACTOR = 0.15  # the head's learning rate while it streams, × the configured one
# Measured on the digits demo at 64 px (head lr 1e-2): at lr × 1 the head overfits the first
# small chunks and stalls near 85 % at 537 cached images; at × 0.15 with 6 passes it passes 91 %.


@dataclass
class HeadLearner:
    """How the head learns while the cache fills: the head itself, one step's settings
    (forward = the head, its own constant-lr optimizer) and the training batch size."""

    head: nn.Module
    opt: Optimisation
    batch_size: int
    seed: int


def chunk_ends(total: int, first: int = FIRST_CHUNK, growth: float = GROWTH) -> list[int]:
    """Cached-image counts after which the head learns: ``first``, growing geometrically (so
    the head's passes cost a bounded multiple of one pass over the cache), below ``total``
    (the full cache goes on to the epochs)."""
    ends, end = [], max(1, first)
    while end < total:
        ends.append(end)
        end = max(end + 1, round(end * growth))
    return ends


def stream_cache(
    model: nn.Module,
    head_path: str,
    train: Sequence[ImageSample],
    val: Sequence[ImageSample],
    transform: Any,
    *,
    device: torch.device,
    batch_size: int,
    workers: int,
    seed: int,
    autocast_dtype: torch.dtype | None,
    channels_last: bool,
    stop: threading.Event | AgreedStop,
    max_events_per_second: float,
    learner: HeadLearner | None,
    group: Group | None = None,
) -> Generator[Event, None, tuple[CachedSplit, CachedSplit] | None]:
    """Cache the head inputs of ``val`` then ``train`` (one loader, so worker processes start
    once), letting ``learner`` (None: just cache) train the head at the chunk ends. A generator
    of ``Progress`` (throttled), ``CacheValidation`` and ``Note`` events returning the train
    and validation caches in sample order, or ``None`` when ``stop`` was set. With a
    distributed ``group`` (and an :class:`AgreedStop`) the ranks share the backbone pass."""
    n_train, n_val = len(train), len(val)
    total = n_train + n_val
    started = time.perf_counter()
    yield Progress(feature_cache.CACHE_STAGE, 0, total)
    stream = epoch_order(seed, 0, n_train)  # shuffled, so every chunk holds every class
    sampler = OrderSampler(total)
    sampler.order = list(range(n_train, total)) + stream.tolist()
    sharded = group is not None and group.distributed
    loader_batch = batch_size
    if sharded:
        sampler.order, shares = batch_slices(sampler.order, batch_size, group.world_size, group.rank)
        loader_batch = shares[0][group.rank]
    loader = make_loader(
        ImageDataset(list(train) + list(val), transform), batch_size=loader_batch, sampler=sampler,
        workers=workers, device=device,
    )
    features: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    ends = chunk_ends(n_train) if learner is not None else []
    val_cache: CachedSplit | None = None
    keep_on: torch.device | None = None
    done = 0
    last_event = 0.0
    interval = 1.0 / max(max_events_per_second, 1e-6)
    try:
        batches = feature_cache.iter_features(
            model, head_path, loader, device, autocast_dtype=autocast_dtype, channels_last=channels_last,
            stop=None if sharded else stop,  # the ranks' parts differ in count; agreed below instead
        )
        if sharded:
            batches = group.gather_batches(batches, shares)
        for batch, targets in batches:
            if sharded and stop.is_set():
                break
            if keep_on is None:
                keep_on = feature_cache.cache_location(device, total, int(batch[0].numel()))
            features.append(batch.to(keep_on))
            labels.append(targets.to(keep_on))
            done += len(targets)
            now = time.perf_counter()
            if now - last_event >= interval or done == total:
                last_event = now
                rate = done / max(now - started, 1e-9)
                yield Progress(feature_cache.CACHE_STAGE, done, total, rate=rate, eta_seconds=(total - done) / rate)
            if val_cache is None and done >= n_val:
                val_cache = _split_off(features, labels, n_val)
            cached = done - n_val
            if val_cache is not None and ends and cached >= ends[0]:
                while ends and cached >= ends[0]:
                    ends.pop(0)
                partial = CachedSplit(torch.cat(features), torch.cat(labels).long())
                measured = _learn(learner, partial, val_cache, len(ends), stop)  # type: ignore[arg-type]
                if measured is None:
                    if stop.is_set():
                        return None
                    ends = []  # diverged: the epochs will say so with their own message
                    yield Note("the head's loss became NaN or infinite while the features were cached; "
                               "it stops learning until the cache is full")
                    continue
                train_loss, (val_loss, val_accuracy) = measured
                yield CacheValidation(
                    cached=cached, total=n_train, train_loss=train_loss, val_loss=val_loss,
                    val_accuracy=val_accuracy, seconds=time.perf_counter() - started,
                )
    finally:
        close_loader(loader)
    if stop.is_set() or done < total or val_cache is None:
        return None
    streamed = CachedSplit(torch.cat(features), torch.cat(labels).long())
    train_cache = CachedSplit(torch.empty_like(streamed.features), torch.empty_like(streamed.labels))
    where = stream.to(streamed.features.device)
    train_cache.features[where] = streamed.features  # back to sample order, as the epochs expect
    train_cache.labels[where] = streamed.labels
    return train_cache, val_cache


def _split_off(features: list[torch.Tensor], labels: list[torch.Tensor], count: int) -> CachedSplit:
    """Take the first ``count`` cached rows out of the lists (the validation split, which the
    pass caches first) and leave the rest, the first training rows, in them."""
    all_features, all_labels = torch.cat(features), torch.cat(labels).long()
    features[:] = [all_features[count:]] if len(all_features) > count else []
    labels[:] = [all_labels[count:]] if len(all_labels) > count else []
    return CachedSplit(all_features[:count], all_labels[:count])


def _learn(
    learner: HeadLearner, partial: CachedSplit, val: CachedSplit, chunk: int, stop: threading.Event | AgreedStop,
) -> tuple[float, tuple[float, float]] | None:
    """The head's passes over ``partial``, then its validation; ``None`` when stopped or when
    the loss diverged."""
    n, batch = len(partial), learner.batch_size
    drop_last = n > batch and n % batch == 1  # a lone image breaks BatchNorm in a head
    steps = n // batch if drop_last else math.ceil(n / batch)
    passes = max(PASSES, math.ceil(MIN_STEPS / max(steps, 1)))
    generator = torch.Generator().manual_seed(learner.seed * 1_000_003 + 700_001 + chunk)
    learner.head.train()
    losses = []
    for _ in range(passes):
        order = torch.randperm(n, generator=generator)
        outcome = drain(train_one_epoch(
            learner.opt, feature_cache.batches(partial, batch, order, drop_last=drop_last),
            epoch=0, steps_per_epoch=steps, global_step=0, stop=stop,
        ))
        if outcome.status != "done":
            return None
        losses.append(outcome.loss)
    learner.head.eval()
    opt = learner.opt
    measured = validate(
        learner.head, feature_cache.batches(val, max(batch, 256)), opt.device,
        autocast_dtype=opt.autocast_dtype, stop=stop,
    )
    if measured is None or not math.isfinite(measured[0]):
        return None
    return losses[-1], measured
