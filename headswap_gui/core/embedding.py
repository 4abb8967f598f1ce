"""A map of the data: every image of a folder as a point in 2D, placed by the model's features.

1. Features: one pass of the model over the images with its own eval preprocessing, keeping
   the head's input pooled to a vector per image and, when the model's classes are the
   folder's, the head's top class, from the same forward pass
   (:func:`label_issues.pooled_features`, the pass the label check makes).
2. PCA: the features centred and projected onto their :data:`TSNE_INPUT_DIMS` leading
   principal axes (:func:`label_issues.principal_components`); the ``"pca"`` method keeps
   the first two as the map.
3. t-SNE (the default method) of those components, by openTSNE (van der Maaten & Hinton's
   t-SNE; Poličar, Stražar & Zupan, "openTSNE", JSS 2024): perplexity 30, PCA
   initialisation, 250 iterations of early exaggeration (12) then 500 plain ones,
   learning rate N / exaggeration (Belkina et al. 2019), Barnes-Hut below 10,000 points and
   FFT-accelerated interpolation above.

Why openTSNE (BSD-3, numpy/scipy/scikit-learn only) and not scikit-learn's TSNE or
umap-learn: it can be driven in slices of :data:`ITERATIONS_PER_EVENT` iterations (its
optimiser keeps its state between calls), so the job reports progress with an ETA and stops
within a fraction of a second, where scikit-learn's TSNE is one opaque call with no progress
and no stop; and it is no slower. Measured on this project's 2 shared, busy cores
(``python bench/bench_embedding.py``, docs/benchmarks.md), from the same features, at the same
11-nearest-neighbour class purity of the map (0.75 on the digits, 0.99 at 20,000 points):
with one thread (the window's on 2 cores), the 1,797 digits in 5.7 s (median of 3, 5.3–8.9)
against 26.1 s (6.0–30.2) for scikit-learn's Barnes-Hut TSNE, 20,000 points in 115 s
against 111 s; with two threads, 20,000 points in 106 s against 188 s (its FFT gradient
parallelises better), while on the digits both then vary from 3 s to 30 s (parallel
Barnes-Hut stalls whenever another process takes a core). umap-learn pulls numba and
llvmlite (~100 MB, a JIT warm-up on first use) into a desktop app for a map t-SNE already
draws well.

The neighbour search (openTSNE's affinities: exact below 1,000 points, Annoy above) is one
call that cannot be interrupted: a stop asked for during it is seen right after it.

:func:`compute_embedding` is a generator of small frozen events, like the label check:
``EmbeddingStarted``, ``Progress`` (features, then the projection with its rate and ETA),
``Note``\\* and exactly one ``EmbeddingFinished`` with the map. It checks a
``threading.Event`` at every batch and every slice of iterations, and raises
:class:`HeadswapError` for unusable input before the first event. :func:`write_map_csv` and
:func:`write_map_png` save a map (``headswap embed``).
"""

from __future__ import annotations

import colorsys
import csv
import os
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

import numpy as np
import torch

from .atomic import save_user_file
from .data import DatasetInfo, ImageSample, printable_path
from .devices import autocast_dtype, cpu_threads, describe_device, is_out_of_memory, resolve_device, training_threads
from .errors import DataError, HeadswapError
from .events import Note, Progress
from .feature_cache import cacheable_head
from .label_issues import (
    FEATURES_STAGE,
    feature_head,
    pooled_features,
    principal_components,
    require_matching_classes,
)
from .sources import LoadedModel

EmbeddingMethod = Literal["tsne", "pca"]
METHODS: tuple[EmbeddingMethod, ...] = ("tsne", "pca")
NEIGHBOURS_STAGE = "finding neighbours"
PROJECTION_STAGE = "projecting"
TSNE_INPUT_DIMS = 50  # the usual PCA step before t-SNE: denoises and makes the neighbour search cheap
EARLY_EXAGGERATION = 12.0
ITERATIONS_PER_EVENT = 10  # t-SNE iterations between two stop checks (about 0.1 s at 20,000 points)
MIN_IMAGES = 3
EmbeddingFinishReason = Literal["completed", "stopped", "failed"]

CLASS_COLOURS: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
"""Tableau's ten category colours (matplotlib's ``tab10``), the table people read class maps in."""


def class_colours(count: int) -> list[tuple[int, int, int]]:
    """One RGB colour per class: :data:`CLASS_COLOURS`, then hues spread by the golden ratio
    (distinct neighbours for any count) past ten. The window and the PNG use the same."""
    colours = list(CLASS_COLOURS[:count])
    for index in range(len(colours), count):
        r, g, b = colorsys.hsv_to_rgb((index * 0.618034) % 1.0, 0.75, 0.85)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


@dataclass(frozen=True)
class EmbeddingConfig:
    """How :func:`compute_embedding` works; the defaults suit a desktop CPU."""

    method: EmbeddingMethod = "tsne"
    perplexity: float = 30.0  # lowered to (N - 1) / 3 for small folders
    early_iterations: int = 250
    iterations: int = 500
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 64
    workers: int = 0  # DataLoader worker processes (spawned)
    cpu_threads: int | None = None  # default: all cores but one (features and t-SNE)
    image_size: int | None = None  # None: the model's (a run's) own input size
    channels_last: bool | None = None  # None: on for CPU and CUDA
    max_events_per_second: float = 10.0

    def problems(self) -> list[str]:
        found = []
        if self.method not in METHODS:
            found.append(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not (isinstance(self.perplexity, (int, float)) and self.perplexity >= 1):
            found.append(f"perplexity must be 1 or more, got {self.perplexity}")
        for name in ("early_iterations", "iterations"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 0):
                found.append(f"{name} must be 0 or more, got {value}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            found.append(f"batch_size must be at least 1, got {self.batch_size}")
        if not (isinstance(self.workers, int) and self.workers >= 0):
            found.append(f"workers must be 0 or more, got {self.workers}")
        if self.image_size is not None and not (isinstance(self.image_size, int) and 8 <= self.image_size <= 2048):
            found.append(f"image_size must be between 8 and 2048 pixels, got {self.image_size}")
        return found


@dataclass(frozen=True, eq=False)
class EmbeddingInfo:
    """A map: row ``i`` is the image ``paths[i]`` at ``coordinates[i]``, filed under class
    ``labels[i]``, predicted as ``predicted[i]`` (None when the model's classes are not the
    folder's). The arrays are read-only, so the event can cross threads as it is."""

    paths: tuple[str, ...]
    coordinates: np.ndarray  # (N, 2) float32
    labels: np.ndarray  # (N,) int64, index into class_names
    predicted: np.ndarray | None  # (N,) int64
    class_names: tuple[str, ...]
    method: EmbeddingMethod
    seconds: float

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def misclassified(self) -> np.ndarray:
        """Per image, whether the model's top class is not its folder's (all False without predictions)."""
        if self.predicted is None:
            return np.zeros(len(self.paths), dtype=bool)
        return self.predicted != self.labels


@dataclass(frozen=True)
class EmbeddingStarted:
    """The map is about to compute features for ``images`` images."""

    images: int
    class_names: tuple[str, ...]
    method: EmbeddingMethod
    device: str


@dataclass(frozen=True)
class EmbeddingFinished:
    """The map is done; ``info`` holds it when ``reason`` is "completed"."""

    reason: EmbeddingFinishReason
    message: str
    info: EmbeddingInfo | None


EmbeddingEvent = EmbeddingStarted | Progress | Note | EmbeddingFinished


def compute_embedding(
    loaded: LoadedModel,
    dataset: DatasetInfo,
    config: EmbeddingConfig | None = None,
    *,
    samples: Sequence[ImageSample] | None = None,
    stop: threading.Event | None = None,
) -> Iterator[EmbeddingEvent]:
    """Place ``samples`` (default: every image of ``dataset``) on a 2D map by the model's
    features; a generator of :data:`EmbeddingEvent` (see the module docstring).

    Any model with weights works: its backbone gives the features; its predictions mark
    the misclassified images when its class names are the folder's. The model is moved to
    the chosen device and left in eval mode. Raises :class:`HeadswapError` right here for a
    folder that does not match the run, too few images or an unusable config.
    """
    config = config or EmbeddingConfig()
    problems = config.problems()
    if problems:
        raise HeadswapError("; ".join(problems))
    if loaded.structure_only:
        raise HeadswapError("the model was loaded for inspection only (no weights); load it with its weights")
    require_matching_classes(loaded, dataset)
    chosen = tuple(dataset.samples) if samples is None else tuple(samples)
    if len(chosen) < MIN_IMAGES:
        raise DataError(
            f"a map needs at least {MIN_IMAGES} images; {dataset.root} has {len(chosen)}"
        )
    heads = loaded.find_heads()
    head = feature_head(heads)
    device = resolve_device(config.device)
    autocast_dtype(config.precision, device)  # an unknown precision is refused here, not mid-run
    # The head's top class is the model's when it is the only head that runs (DeiT's two are averaged).
    predict = tuple(loaded.class_names or ()) == tuple(dataset.class_names) and cacheable_head(heads)[0] is not None
    return _embed(loaded, dataset, config, chosen, head, predict, device, stop or threading.Event())


def _embed(
    loaded: LoadedModel,
    dataset: DatasetInfo,
    config: EmbeddingConfig,
    samples: tuple[ImageSample, ...],
    head_path: str,
    predict: bool,
    device: torch.device,
    stop: threading.Event,
) -> Generator[EmbeddingEvent, None, None]:
    started = time.perf_counter()
    class_names = tuple(dataset.class_names)
    with cpu_threads(device, config.cpu_threads):
        try:
            yield EmbeddingStarted(len(samples), class_names, config.method, describe_device(device))
            if not predict:
                yield Note("the model's classes are not the folder's (or it has more than one head): the map "
                           "shows the folder's classes only, no misclassified images")
            cached = yield from with_rate(pooled_features(loaded, samples, head_path, device, config, predict=predict,
                                                          stop=stop))
            if cached is None:
                yield EmbeddingFinished("stopped", "stopped while computing features; no map", None)
                return
            components = principal_components(cached.features, TSNE_INPUT_DIMS).cpu().numpy()
            predicted = None if cached.predicted is None else _frozen(cached.predicted.cpu().numpy().astype(np.int64))
            del cached
            if config.method == "pca":
                coordinates = _pca_map(components)
            else:
                coordinates = yield from tsne(components, config, threads=config.cpu_threads, stop=stop)
                if coordinates is None:
                    yield EmbeddingFinished("stopped", "stopped while projecting; no map", None)
                    return
            info = EmbeddingInfo(
                paths=tuple(s.path for s in samples),
                coordinates=_frozen(coordinates.astype(np.float32)),
                labels=_frozen(np.array([s.label for s in samples], dtype=np.int64)),
                predicted=predicted,
                class_names=class_names,
                method=config.method,
                seconds=time.perf_counter() - started,
            )
            yield EmbeddingFinished("completed", _summary(info), info)
        except Exception as error:
            if not (isinstance(error, HeadswapError) or is_out_of_memory(error)):
                raise
            message = str(error) if isinstance(error, HeadswapError) else (
                f"out of memory on {device}; use a smaller batch size or image size, or the CPU"
            )
            yield EmbeddingFinished("failed", message, None)


def _pca_map(components: np.ndarray) -> np.ndarray:
    """The first two principal components (a zero column when the features have only one)."""
    coordinates = np.zeros((len(components), 2), dtype=np.float32)
    coordinates[:, : min(2, components.shape[1])] = components[:, :2]
    return coordinates


def tsne(
    x: np.ndarray,
    config: EmbeddingConfig | None = None,
    *,
    threads: int | None = None,
    stop: threading.Event | None = None,
) -> Generator[Progress, None, np.ndarray | None]:
    """openTSNE's t-SNE of the rows of ``x`` (see the module docstring), driven in slices of
    :data:`ITERATIONS_PER_EVENT` iterations. A generator of ``Progress`` (the neighbour
    search, then the iterations with their rate and ETA) whose return value is the (N, 2)
    map, or ``None`` when ``stop`` was set."""
    from openTSNE import TSNE  # a 0.5 s import, only when a map is drawn

    config = config or EmbeddingConfig()
    x = np.ascontiguousarray(x, dtype=np.float64)
    n = len(x)
    jobs = threads or training_threads()
    perplexity = float(min(config.perplexity, max(1.0, (n - 1) / 3)))
    method = "bh" if n < 10_000 else "fft"
    yield Progress(NEIGHBOURS_STAGE, 0, 1)
    if stop is not None and stop.is_set():
        return None
    embedding = TSNE(perplexity=perplexity, n_jobs=jobs, random_state=config.seed,
                     negative_gradient_method=method).prepare_initial(x)
    yield Progress(NEIGHBOURS_STAGE, 1, 1)
    phases = [(config.early_iterations, EARLY_EXAGGERATION), (config.iterations, None)]
    total = config.early_iterations + config.iterations
    done = 0
    started = time.perf_counter()
    last_event = 0.0
    interval = 1.0 / max(config.max_events_per_second, 1e-6)
    yield Progress(PROJECTION_STAGE, 0, total)
    for iterations, exaggeration in phases:
        for first in range(0, iterations, ITERATIONS_PER_EVENT):
            if stop is not None and stop.is_set():
                return None
            step = min(ITERATIONS_PER_EVENT, iterations - first)
            embedding = embedding.optimize(n_iter=step, exaggeration=exaggeration, momentum=0.8, inplace=True,
                                           n_jobs=jobs)
            done += step
            now = time.perf_counter()
            if now - last_event >= interval or done == total:
                last_event = now
                rate = done / max(now - started, 1e-9)
                yield Progress(PROJECTION_STAGE, done, total, rate, (total - done) / rate)
    return np.asarray(embedding, dtype=np.float32)


T = TypeVar("T")


def with_rate(events: Generator[Progress | Note, None, T]) -> Generator[Progress | Note, None, T]:
    """``events`` with each ``Progress`` given its rate and ETA, measured from the first
    event of its stage (the backbone pass knows its counts, not its time)."""
    stage, started = None, 0.0
    while True:
        try:
            event = next(events)
        except StopIteration as end:
            return end.value
        if isinstance(event, Progress) and event.rate is None:
            now = time.perf_counter()
            if event.stage != stage:
                stage, started = event.stage, now
            elapsed = now - started
            if event.done and elapsed > 0:
                rate = event.done / elapsed
                event = replace(event, rate=rate, eta_seconds=(event.total - event.done) / rate)
        yield event


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _summary(info: EmbeddingInfo) -> str:
    method = "t-SNE" if info.method == "tsne" else "PCA"
    text = f"mapped {len(info):,} images in {len(info.class_names)} classes by {method} in {info.seconds:.1f} s"
    if info.predicted is not None:
        wrong = int(info.misclassified.sum())
        text += f"; the model gets {wrong:,} of them wrong"
    return text


# --- files ----------------------------------------------------------------------------------------


CSV_COLUMNS = ("path", "label", "predicted", "misclassified", "x", "y")


def write_map_csv(path: str | os.PathLike[str], info: EmbeddingInfo) -> None:
    """One row per image: :data:`CSV_COLUMNS` (``predicted`` empty without predictions)."""
    names = info.class_names
    misclassified = info.misclassified

    def write(temp: str) -> None:
        with open(temp, "w", encoding="utf-8", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(CSV_COLUMNS)
            for i, image in enumerate(info.paths):
                predicted = "" if info.predicted is None else names[int(info.predicted[i])]
                x, y = info.coordinates[i]
                writer.writerow((printable_path(image), names[int(info.labels[i])], predicted,
                                 "yes" if misclassified[i] else "no", f"{x:.6g}", f"{y:.6g}"))

    save_user_file(path, write, "map.csv")


def write_map_png(path: str | os.PathLike[str], info: EmbeddingInfo, size: int = 1200) -> None:
    """The map as a picture: a dot per image in its class colour, a black ring around each
    misclassified one, and a legend of the classes (PIL only)."""
    from PIL import Image, ImageDraw, ImageFont

    legend_width = 24 + 8 * max(len(name) for name in info.class_names) + 40
    margin, dot = 24, max(2, size // 300)
    image = Image.new("RGB", (size + legend_width, size), "white")
    draw = ImageDraw.Draw(image)
    points = info.coordinates.astype(np.float64)
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.where(high - low > 0, high - low, 1.0)
    pixels = margin + (points - low) / span * (size - 2 * margin)
    pixels[:, 1] = size - pixels[:, 1]  # y up, as in the window
    colours = class_colours(len(info.class_names))
    misclassified = info.misclassified
    for (px, py), label in zip(pixels, info.labels):
        draw.ellipse((px - dot, py - dot, px + dot, py + dot), fill=colours[int(label)])
    for px, py in pixels[misclassified]:
        ring = dot + 2
        draw.ellipse((px - ring, py - ring, px + ring, py + ring), outline="black", width=max(1, dot // 2))
    font = ImageFont.load_default()
    for index, name in enumerate(info.class_names):
        top = margin + index * 22
        draw.ellipse((size + 8, top + 4, size + 20, top + 16), fill=colours[index])
        draw.text((size + 28, top + 2), name, fill="black", font=font)
    if misclassified.any():
        top = margin + len(info.class_names) * 22 + 8
        draw.ellipse((size + 8, top + 4, size + 20, top + 16), outline="black", width=2)
        draw.text((size + 28, top + 2), "misclassified", fill="black", font=font)
    save_user_file(path, lambda temp: image.save(temp, format="PNG"), "map.png")


__all__ = [
    "CLASS_COLOURS",
    "CSV_COLUMNS",
    "FEATURES_STAGE",
    "METHODS",
    "NEIGHBOURS_STAGE",
    "PROJECTION_STAGE",
    "EmbeddingConfig",
    "EmbeddingEvent",
    "EmbeddingFinished",
    "EmbeddingInfo",
    "EmbeddingStarted",
    "class_colours",
    "compute_embedding",
    "tsne",
    "with_rate",
    "write_map_csv",
    "write_map_png",
]
