"""The DataLoaders training, evaluation and the feature cache read images through.

One place decides how images reach a model: loaders never fork (worker processes are
spawned, which is safe next to Qt's threads and from a worker thread), keep their workers
for the whole run, pin memory for CUDA, and follow an order set per epoch, so a cached and an
uncached run see identical batches and a resumed run shuffles exactly like an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from .data import ImageDataset, ImageSample, build_transform
from .preprocessing import Preprocessing


class OrderSampler(Sampler[int]):
    """Yields the sample order set for the current epoch (``sampler.order = ...``)."""

    def __init__(self, size: int) -> None:
        self.order: list[int] = list(range(size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


def epoch_order(seed: int, epoch: int, size: int) -> torch.Tensor:
    """The shuffled sample order of ``epoch`` (0-based): a function of the seed and the epoch
    only, so a resumed run shuffles exactly as an uninterrupted one."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(size, generator=generator)


def make_loader(
    dataset: Any,
    *,
    batch_size: int,
    sampler: Sampler[int] | None,
    workers: int,
    device: torch.device | None,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader that never forks: worker processes are spawned (safe next to Qt's threads)
    and persist across epochs."""
    options: dict[str, Any] = {}
    if workers > 0:
        options = {"num_workers": workers, "multiprocessing_context": "spawn", "persistent_workers": True}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        drop_last=drop_last,
        generator=generator,
        pin_memory=device is not None and device.type == "cuda",
        **options,
    )


@dataclass
class ImageLoaders:
    """A run's loaders when every step runs the whole model: the training loader follows
    ``train_sampler``'s order (set each epoch); ``val_share`` is how many validation images
    this process measures (all of them in one process, its part under torchrun)."""

    train_sampler: OrderSampler
    train: DataLoader
    val: DataLoader
    val_share: int

    def close(self) -> None:
        close_loader(self.train)
        close_loader(self.val)


def image_loaders(
    train: Sequence[ImageSample],
    val: Sequence[ImageSample],
    train_transform: Any,
    eval_transform: Any,
    *,
    rank_batches: Sequence[int],
    rank: int,
    workers: int,
    device: torch.device,
    generator: torch.Generator,
    drop_last: bool,
) -> ImageLoaders:
    """The training and validation loaders of one process: under torchrun each rank loads its
    share of every batch (``rank_batches[rank]``; the sampler's order is the rank's part, cut
    by ``distributed.batch_slices``, which drops the last batch itself) and validates its
    part of the validation split."""
    sampler = OrderSampler(len(train))
    distributed = len(rank_batches) > 1
    train_loader = make_loader(
        ImageDataset(train, train_transform), batch_size=rank_batches[rank], sampler=sampler, workers=workers,
        device=device, generator=generator, drop_last=drop_last and not distributed,
    )
    val_part = torch.tensor_split(torch.arange(len(val)), len(rank_batches))[rank].tolist()
    val_loader = make_loader(
        ImageDataset([val[i] for i in val_part], eval_transform), batch_size=rank_batches[rank], sampler=None,
        workers=workers, device=device,
    )
    return ImageLoaders(sampler, train_loader, val_loader, len(val_part))


def build_eval_loader(
    samples: Sequence[ImageSample],
    preprocessing: Preprocessing,
    *,
    batch_size: int = 64,
    workers: int = 0,
    device: torch.device | None = None,
    sampler: Sampler[int] | None = None,
) -> DataLoader:
    """A DataLoader over ``samples`` with the model's eval transform, in sample order (or in
    ``sampler``'s)."""
    dataset = ImageDataset(samples, build_transform(preprocessing, "none", train=False))
    return make_loader(dataset, batch_size=batch_size, sampler=sampler, workers=workers, device=device)


def close_loader(loader: DataLoader) -> None:
    """Shut persistent workers down now, on this thread."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None:
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        loader._iterator = None


def load_sample(sample: ImageSample) -> Any:
    """One sample's image, decoded as the loaders decode it."""
    from .images import load_image

    return load_image(sample.path)
