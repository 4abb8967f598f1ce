"""Find the training images most likely mislabelled or broken.

The method, in the terms of confident learning (Northcutt, Jiang & Chuang, "Confident
Learning: Estimating Uncertainty in Dataset Labels", JAIR 2021):

1. Features: the model's backbone runs once over the images with the model's own eval
   preprocessing, and the head's input is kept (:func:`feature_cache.extract_features`, the
   same hook that caches features for head-only training). A 1×1-conv head's feature maps
   are averaged to vectors. They are projected onto their 256 leading principal axes (no
   labels involved), which makes every fit below cheap.
2. Out-of-fold probabilities: the images are dealt into ``folds`` stratified folds; for each
   fold a multinomial logistic regression (L2, full-batch L-BFGS) is fitted on the other
   folds and predicts the held-out one, so no image is judged by a classifier that saw its
   label. The L2 strength is picked from :data:`L2_GRID` by out-of-fold agreement with the
   given labels.
3. Scores: an image's score is the out-of-fold probability of its given label
   ("self-confidence", cleanlab's default label-quality score); lower means more likely
   wrong. An image is *flagged* when it confidently belongs elsewhere: with the per-class
   thresholds ``t_j`` = mean probability of class ``j`` over the images labelled ``j``, its
   most probable class among those with ``p_j ≥ t_j`` is not its given one (the
   off-diagonal of the confident joint, cleanlab's ``filter_by="confident_learning"``; on
   the digits benchmark both the scores and the flags are identical to cleanlab 2.9's). The
   flags are a conservative estimate (on the digits with 5 % swapped: about 70 % of the
   swapped files, 85 % of the flags right); the ranking by score is the main output.

A head-only run's backbone is the pretrained one, untouched by the labels; a backbone
fine-tuned on them (``--freeze full``) may have learnt some of the wrong ones, which then
score higher (not measured). cleanlab itself is not a dependency: it is Apache-2.0 but
pulls pandas into the app for the thirty lines below, which give the same scores and flags.

Files the folder scan skipped as unreadable (corrupt, truncated, zero bytes, ...) are listed
first as "broken", with the scan's reason and a score of 0.

:func:`find_label_issues` is a generator of small frozen events, like :func:`training.fit`:
``LabelCheckStarted``, ``Progress`` (features, then folds), ``Note``\\* and exactly one
``LabelCheckFinished`` with the ranked list. It checks a ``threading.Event`` at every batch
and every optimiser step, and raises :class:`HeadswapError` for unusable input before the
first event.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from . import feature_cache
from .data import DatasetInfo, ImageSample, printable_path
from .devices import (
    autocast_dtype,
    cpu_threads,
    describe_device,
    feature_pass_dtype,
    is_out_of_memory,
    one_cpu_thread,
    resolve_device,
)
from .errors import DataError, HeadError, HeadswapError
from .events import Note, Progress
from .heads import HeadInfo
from .images import is_image_file
from .input_size import fit_input_size
from .sources import LoadedModel

FEATURES_STAGE = feature_cache.CACHE_STAGE
FOLDS_STAGE = "cross-validating"
BROKEN_REASONS_EXCLUDED = ("not in a class folder", "same file as in class", "excluded")
"""Skipped files that are not broken images (a stray file, a second link to one image, an
image the folder's exclusion list leaves out)."""
LBFGS_ITERATIONS_PER_STEP = 20
PCA_DIMS = 256
SMALL_FIT_WORK = 2**26  # images × components × classes below which a fit runs on one CPU thread
L2_GRID = (0.01, 0.1, 1.0)
"""L2 strengths tried (against the mean cross-entropy, on components scaled to unit mean
variance): a decade grid,
chosen per dataset by out-of-fold agreement, since the right strength depends on the number
of images and how separable the features are."""

IssueKind = Literal["label", "broken"]
CheckFinishReason = Literal["completed", "stopped", "failed"]


@dataclass(frozen=True)
class LabelCheckConfig:
    """How :func:`find_label_issues` works; the defaults suit a desktop CPU."""

    folds: int = 5
    seed: int = 0
    steps: int = 200  # L-BFGS iterations per fit at most
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 64
    workers: int = 0  # DataLoader worker processes (spawned)
    cpu_threads: int | None = None  # default: all cores but one
    image_size: int | None = None  # None: the model's (a run's) own input size
    channels_last: bool | None = None  # None: on for CPU and CUDA
    max_events_per_second: float = 10.0

    def problems(self) -> list[str]:
        found = []
        if not (isinstance(self.folds, int) and 2 <= self.folds <= 50):
            found.append(f"folds must be between 2 and 50, got {self.folds}")
        if not (isinstance(self.steps, int) and self.steps >= 1):
            found.append(f"steps must be at least 1, got {self.steps}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            found.append(f"batch_size must be at least 1, got {self.batch_size}")
        if not (isinstance(self.workers, int) and self.workers >= 0):
            found.append(f"workers must be 0 or more, got {self.workers}")
        if self.image_size is not None and not (isinstance(self.image_size, int) and 8 <= self.image_size <= 2048):
            found.append(f"image_size must be between 8 and 2048 pixels, got {self.image_size}")
        return found


@dataclass(frozen=True)
class LabelIssue:
    """One image, as judged: ``score`` is the out-of-fold probability of its given label
    (0 for a broken file); ``flagged`` says confident learning counts it as a label issue."""

    path: str
    given_label: str
    suggested_label: str | None  # None for a broken file
    score: float
    suggested_probability: float | None
    flagged: bool
    kind: IssueKind = "label"
    reason: str = ""  # a broken file's scan reason

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": printable_path(self.path),
            "given_label": self.given_label,
            "suggested_label": self.suggested_label,
            "score": self.score,
            "suggested_probability": self.suggested_probability,
            "flagged": self.flagged,
            "kind": self.kind,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class LabelIssuesInfo:
    """Every checked image and every broken file, worst first (broken, then by score)."""

    issues: tuple[LabelIssue, ...]
    class_names: tuple[str, ...]
    images: int  # images scored (broken files not counted)
    folds: int
    out_of_fold_accuracy: float  # how often the out-of-fold prediction matches the given label
    l2: float | None  # the regularisation strength the cross-validation chose
    seconds: float

    @property
    def flagged(self) -> tuple[LabelIssue, ...]:
        """The images confident learning counts as issues (and the broken files), worst first."""
        return tuple(issue for issue in self.issues if issue.flagged)

    def top(self, count: int) -> tuple[LabelIssue, ...]:
        return self.issues[: max(0, count)]


@dataclass(frozen=True)
class LabelCheckStarted:
    """The check is about to compute features: ``images`` to score, ``broken`` files found."""

    images: int
    broken: int
    class_names: tuple[str, ...]
    folds: int
    device: str


@dataclass(frozen=True)
class LabelCheckFinished:
    """The check is over; ``info`` holds the ranking when ``reason`` is "completed"."""

    reason: CheckFinishReason
    message: str
    info: LabelIssuesInfo | None


LabelCheckEvent = LabelCheckStarted | Progress | Note | LabelCheckFinished


# --- the check ---------------------------------------------------------------------------------


def find_label_issues(
    loaded: LoadedModel,
    dataset: DatasetInfo,
    config: LabelCheckConfig | None = None,
    *,
    samples: Sequence[ImageSample] | None = None,
    stop: threading.Event | None = None,
) -> Iterator[LabelCheckEvent]:
    """Rank ``samples`` (default: :func:`training_samples`) of ``dataset`` by how likely their
    label is wrong, with the model's backbone as the feature extractor; a generator of
    :data:`LabelCheckEvent` (see the module docstring).

    ``loaded`` is usually a training run (its classes must be the folder's), but any model
    source works: only its backbone is used. The model is moved to the chosen device and left
    in eval mode. Raises :class:`HeadswapError` right here for a folder that does not match
    the run, too few images or an unusable config.
    """
    config = config or LabelCheckConfig()
    problems = config.problems()
    if problems:
        raise HeadswapError("; ".join(problems))
    if loaded.structure_only:
        raise HeadswapError("the model was loaded for inspection only (no weights); load it with its weights")
    require_matching_classes(loaded, dataset)
    chosen = training_samples(loaded, dataset) if samples is None else tuple(samples)
    labels = sorted({s.label for s in chosen})
    if len(chosen) < config.folds or len(labels) < 2:
        raise DataError(
            f"checking labels needs at least {config.folds} images in at least 2 classes; "
            f"{len(chosen)} image{'s' if len(chosen) != 1 else ''} in {len(labels)} class"
            f"{'es' if len(labels) != 1 else ''} of {dataset.root} are to be checked"
        )
    head = feature_head(loaded.find_heads())
    device = resolve_device(config.device)
    autocast_dtype(config.precision, device)  # an unknown precision is refused here, not mid-run
    return _check(loaded, dataset, config, chosen, head, device, stop or threading.Event())


def require_matching_classes(loaded: LoadedModel, dataset: DatasetInfo) -> None:
    """A run (or headswap model folder) must be checked on a folder with its own classes."""
    recorded = loaded.metadata.get("class_names") if loaded.metadata else None
    if not recorded:
        return
    recorded = tuple(recorded)
    found = tuple(dataset.class_names)
    if recorded == found:
        return
    missing = [name for name in recorded if name not in found]
    extra = [name for name in found if name not in recorded]
    detail = []
    if missing:
        detail.append(f"missing: {', '.join(missing)}")
    if extra:
        detail.append(f"not in the run: {', '.join(extra)}")
    where = loaded.metadata.get("dataset_root")
    hint = f"; give the run's own image folder ({where})" if where else "; give the folder the run was trained on"
    raise DataError(
        f"{dataset.root} does not match the run {loaded.source}: the run was trained on the classes "
        f"{', '.join(recorded)}, the folder has {', '.join(found)}"
        f"{' (' + '; '.join(detail) + ')' if detail else ' (another order)'}{hint}"
    )


def training_samples(loaded: LoadedModel, dataset: DatasetInfo) -> tuple[ImageSample, ...]:
    """The images of ``dataset`` that the run trained on: all of them except those its
    recorded split validated on (matched by path relative to the folder, so a moved folder
    still matches). Images added since the run count as training images. A model without a
    recorded split (not a run) has every image checked, or those in ``train/`` when the folder
    has ``train/`` and ``val/``."""
    split = (loaded.metadata or {}).get("split") or {}
    validated = {str(row[0]) for row in split.get("val") or []}
    if not validated:
        return dataset.predefined_split.train if dataset.predefined_split is not None else tuple(dataset.samples)
    return tuple(s for s in dataset.samples if _relative(s.path, dataset.root) not in validated)


def broken_files(dataset: DatasetInfo, loaded: LoadedModel | None = None) -> tuple[LabelIssue, ...]:
    """The image files the scan skipped because they cannot be read, as "broken" entries
    under their class folder's name. Stray files (not images, outside class folders, second
    links to an image) are not broken; with a run, files in its validation part are left out."""
    validated = {str(row[0]) for row in ((loaded.metadata or {}).get("split") or {}).get("val") or []} if loaded else set()
    predefined = dataset.predefined_split is not None
    found = []
    for skipped in dataset.skipped:
        if skipped.reason.startswith(BROKEN_REASONS_EXCLUDED) or not is_image_file(skipped.path):
            continue
        relative = _relative(skipped.path, dataset.root)
        parts = relative.split("/")
        if predefined:
            if parts[0] == "val":
                continue
            parts = parts[1:]
        if len(parts) < 2 or parts[0] not in dataset.class_names or relative in validated:
            continue
        reason = "not a readable image" if skipped.reason == "not an image" else skipped.reason
        found.append(LabelIssue(skipped.path, parts[0], None, 0.0, None, True, "broken", reason))
    return tuple(sorted(found, key=lambda issue: issue.path))


def feature_head(heads: Sequence[HeadInfo]) -> str:
    """The head whose input serves as the image's feature vector: the main head (a feature
    extractor's empty slot, where the model has no head yet)."""
    for role in ("main", "new"):
        for head in heads:
            if head.role == role:
                return head.path
    inference = [h for h in heads if h.role != "auxiliary"]
    if not inference:
        raise HeadError("the model has no classifier head whose input could serve as features")
    return inference[0].path


def _check(
    loaded: LoadedModel,
    dataset: DatasetInfo,
    config: LabelCheckConfig,
    samples: tuple[ImageSample, ...],
    head_path: str,
    device: torch.device,
    stop: threading.Event,
) -> Generator[LabelCheckEvent, None, None]:
    started = time.perf_counter()
    class_names = tuple(dataset.class_names)
    broken = broken_files(dataset, loaded)
    with cpu_threads(device, config.cpu_threads):
        try:
            yield LabelCheckStarted(len(samples), len(broken), class_names, _effective_folds(samples, config.folds),
                                    describe_device(device))
            cached = yield from pooled_features(loaded, samples, head_path, device, config, stop=stop)
            if cached is None:
                yield LabelCheckFinished("stopped", "stopped while computing features; nothing was checked", None)
                return
            features = cached.features
            del cached
            out_of_fold = yield from out_of_fold_probabilities(
                features, torch.tensor([s.label for s in samples]), len(class_names), folds=config.folds,
                seed=config.seed, steps=config.steps, stop=stop,
            )
            if out_of_fold is None:
                yield LabelCheckFinished("stopped", "stopped while cross-validating; nothing was checked", None)
                return
            info = rank_label_issues(samples, out_of_fold.probabilities, class_names, broken=broken,
                                     folds=_effective_folds(samples, config.folds), l2=out_of_fold.l2,
                                     seconds=time.perf_counter() - started)
            yield LabelCheckFinished("completed", _summary(info), info)
        except Exception as error:
            if not (isinstance(error, HeadswapError) or is_out_of_memory(error)):
                raise
            message = str(error) if isinstance(error, HeadswapError) else (
                f"out of memory on {device}; use a smaller batch size or image size, or the CPU"
            )
            yield LabelCheckFinished("failed", message, None)


class FeatureSettings(Protocol):
    """The settings of a backbone pass (:class:`LabelCheckConfig` and the embedding's
    config have them all)."""

    device: str
    precision: str
    batch_size: int
    workers: int
    cpu_threads: int | None
    image_size: int | None
    channels_last: bool | None
    max_events_per_second: float


def pooled_features(
    loaded: LoadedModel,
    samples: Sequence[ImageSample],
    head_path: str,
    device: torch.device,
    settings: FeatureSettings,
    *,
    predict: bool = False,
    stop: threading.Event | None = None,
) -> Generator[Progress | Note, None, feature_cache.CachedSplit | None]:
    """One pass of the model over ``samples`` with its own eval preprocessing (resized to
    ``settings.image_size`` when given, with a ``Note`` if the model had to be adapted),
    keeping the head's input pooled to one vector per image (:func:`pooled`) and, with
    ``predict``, the head's top class (``CachedSplit.predicted``). A generator of ``Progress`` (``FEATURES_STAGE``)
    whose return value is the :class:`~feature_cache.CachedSplit` in sample order, or
    ``None`` when ``stop`` was set. The model is moved to ``device`` and left in eval mode;
    run it inside :func:`cpu_threads` to choose the CPU threads."""
    from .loaders import build_eval_loader, close_loader

    preprocessing = loaded.preprocessing
    if settings.image_size and settings.image_size != preprocessing.input_size:
        note = fit_input_size(loaded.model, settings.image_size, preprocessing.input_size)
        preprocessing = preprocessing.with_input_size(settings.image_size)
        if note:
            yield Note(note)
    channels_last = device.type in ("cuda", "cpu") if settings.channels_last is None else bool(settings.channels_last)
    model = loaded.model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    total = len(samples)
    yield Progress(FEATURES_STAGE, 0, total)
    loader = build_eval_loader(samples, preprocessing, batch_size=settings.batch_size, workers=settings.workers,
                               device=device)
    reduce = _with_top_class(model.get_submodule(head_path)) if predict else pooled
    try:
        cached = yield from feature_cache.extract_features(
            model, head_path, loader, device, total=total,
            autocast_dtype=feature_pass_dtype(settings.precision, device), channels_last=channels_last, stop=stop,
            max_events_per_second=settings.max_events_per_second, reduce=reduce,
        )
    finally:
        close_loader(loader)
    if cached is None or not predict:
        return cached
    features = cached.features
    return feature_cache.CachedSplit(features[:, :-1], cached.labels, features[:, -1].long())


def _with_top_class(head: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """:func:`pooled` with the head's top class for each image as one more column (float32:
    exact up to 2**24 classes, even under autocast), so it comes through the feature pass
    without a second forward. The head's output on its input is the model's own output for
    every model with one inference head and nothing after it (feature_cache's condition for
    caching); a head pooled afterwards (SqueezeNet's) gives its pooled scores."""

    def reduce(features: torch.Tensor) -> torch.Tensor:
        top = pooled(head(features)).argmax(dim=1, keepdim=True)
        return torch.cat([pooled(features).float(), top.float()], dim=1)

    return reduce


def pooled(features: torch.Tensor) -> torch.Tensor:
    """One vector per image: feature maps (N, C, H, W) averaged over space, token sequences
    (N, T, D) averaged over tokens; vectors as they are."""
    if features.dim() == 4:
        return features.mean(dim=(2, 3))
    if features.dim() > 2:
        return features.mean(dim=tuple(range(1, features.dim() - 1)))
    return features


# --- out-of-fold probabilities -------------------------------------------------------------------


def stratified_folds(labels: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """A fold number for every sample: each class's samples shuffled (seeded) and dealt out
    in turn, continuing where the previous class stopped, so fold sizes differ by one at most."""
    labels = np.asarray(labels)
    assignment = np.empty(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    offset = 0
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        assignment[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return assignment


@dataclass(frozen=True)
class OutOfFold:
    """Out-of-fold probabilities (rows in sample order) and the regularisation they used."""

    probabilities: np.ndarray  # (N, num_classes) float32
    l2: float
    accuracy: float  # agreement of the out-of-fold predictions with the given labels
    log_loss: float


def principal_components(features: torch.Tensor, dims: int = PCA_DIMS) -> torch.Tensor:
    """The features centred and projected onto their ``dims`` leading principal axes (fewer
    when there are fewer features or images). Uses no labels, so no fold learns anything
    about a held-out label from it; it makes each fit cheap and drops the noisiest axes."""
    x = features.double()
    x = x - x.mean(dim=0)
    dims = min(dims, x.shape[1], max(1, x.shape[0] - 1))
    if dims == x.shape[1]:
        return x.float()
    if x.shape[0] <= x.shape[1]:
        # Fewer images than features: the D × D scatter matrix has D − N + 1 zero eigenvalues,
        # on which eigh can fail to converge (it did for a few dozen images of 1,280 features); the
        # thin SVD of the N × D data gives the same axes from the N singular values.
        left, singular, _ = torch.linalg.svd(x, full_matrices=False)
        return (left[:, :dims] * singular[:dims]).float()
    _, vectors = torch.linalg.eigh(x.T @ x)  # ascending eigenvalues
    return (x @ vectors[:, -dims:].flip(1)).float()


def out_of_fold_probabilities(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    folds: int = 5,
    seed: int = 0,
    steps: int = 200,
    l2_grid: Sequence[float] = L2_GRID,
    stop: threading.Event | None = None,
) -> Generator[Progress, None, OutOfFold | None]:
    """Each row predicted by a logistic regression fitted on the other folds, for each
    strength in ``l2_grid``; the strength whose out-of-fold predictions agree best with the
    given labels (then: lower log-loss) is kept. A generator of ``Progress`` per fit whose
    return value is the :class:`OutOfFold`, or ``None`` when ``stop`` was set."""
    x = principal_components(features.float())
    labels_np = labels.cpu().numpy().astype(np.int64)
    folds = _effective_folds(labels_np, folds)
    assignment = torch.as_tensor(stratified_folds(labels_np, folds, seed), device=x.device)
    labels = labels.to(x.device).long()
    total = folds * len(l2_grid)
    yield Progress(FOLDS_STAGE, 0, total)
    best: OutOfFold | None = None
    for round_index, l2 in enumerate(l2_grid):
        result = torch.zeros(len(labels), num_classes, dtype=torch.float32, device=x.device)
        for fold in range(folds):
            held_out = assignment == fold
            with _threads_for(x.device, x.numel() * num_classes):
                fitted = fit_logistic_regression(x[~held_out], labels[~held_out], num_classes, steps=steps, l2=l2,
                                                 stop=stop)
                if fitted is not None:
                    result[held_out] = fitted(x[held_out])
            if fitted is None:
                return None
            yield Progress(FOLDS_STAGE, round_index * folds + fold + 1, total)
        probabilities = result.cpu().numpy()
        given = probabilities[np.arange(len(labels_np)), labels_np]
        candidate = OutOfFold(
            probabilities, float(l2), float((probabilities.argmax(axis=1) == labels_np).mean()),
            float(-np.log(np.clip(given, 1e-12, 1.0)).mean()),
        )
        if best is None or (candidate.accuracy, -candidate.log_loss) > (best.accuracy, -best.log_loss):
            best = candidate
    return best


class _Logistic:
    def __init__(self, mean: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.mean, self.scale, self.weight, self.bias = mean, scale, weight, bias

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (((features - self.mean) / self.scale) @ self.weight + self.bias).softmax(dim=1)


def fit_logistic_regression(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    steps: int = 200,
    l2: float = 0.1,
    stop: threading.Event | None = None,
) -> _Logistic | None:
    """Multinomial logistic regression by full-batch L-BFGS on the features centred and
    divided by one scale (their RMS), so the relative variances stay: standardising each
    feature would lift weak, noisy directions to the strength of the leading ones (on 400
    digits that halved the recall). ``l2`` weighs ``½‖W‖²`` against the mean cross-entropy
    (1/N would be scikit-learn's ``C=1``). Returns a callable giving probabilities, or
    ``None`` when ``stop`` was set (checked before every step of 20 iterations)."""
    mean = features.mean(dim=0)
    scale = (features - mean).pow(2).mean().sqrt().clamp_min(1e-12)  # one number: relative variances stay
    x = (features - mean) / scale
    weight = torch.zeros(x.shape[1], num_classes, device=x.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=LBFGS_ITERATIONS_PER_STEP, history_size=20,
        line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-10,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, labels) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    previous = math.inf
    with torch.enable_grad():
        for _ in range(math.ceil(steps / LBFGS_ITERATIONS_PER_STEP)):
            if stop is not None and stop.is_set():
                return None
            loss = float(optimizer.step(closure).detach())  # the loss where this step started
            if abs(previous - loss) <= 1e-9 * max(1.0, abs(loss)):
                break  # the last step did not move: converged
            previous = loss
    return _Logistic(mean, scale, weight.detach(), bias.detach())


@contextmanager
def _threads_for(device: torch.device, work: int) -> Iterator[None]:
    """One CPU thread for small fits: an L-BFGS step on digits-sized problems is hundreds of
    tiny operations, where splitting each over threads costs more than it saves (on a busy
    2-core machine 15 fits took 33 s on two threads, under 1 s on one)."""
    if device.type != "cpu" or work >= SMALL_FIT_WORK:
        yield
        return
    with one_cpu_thread():
        yield


def _effective_folds(samples: Sequence[Any] | np.ndarray, folds: int) -> int:
    return max(2, min(folds, len(samples)))


# --- confident learning ----------------------------------------------------------------------


def per_class_thresholds(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``t_j``: the mean probability of class ``j`` over the images labelled ``j`` (infinite
    for a class with none, which then never counts as confident)."""
    num_classes = probabilities.shape[1]
    thresholds = np.full(num_classes, np.inf)
    for j in range(num_classes):
        members = labels == j
        if members.any():
            thresholds[j] = float(probabilities[members, j].mean())
    return thresholds


def confident_classes(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per image, its most probable class among those it reaches the threshold of; -1 when
    it reaches none (as cleanlab's confident joint, thresholds less 1e-6)."""
    thresholds = per_class_thresholds(probabilities, labels)
    above = probabilities >= thresholds - 1e-6
    masked = np.where(above, probabilities, -np.inf)
    confident = masked.argmax(axis=1)
    confident[~above.any(axis=1)] = -1
    return confident


def rank_label_issues(
    samples: Sequence[ImageSample],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    *,
    broken: Sequence[LabelIssue] = (),
    folds: int = 0,
    l2: float | None = None,
    seconds: float = 0.0,
) -> LabelIssuesInfo:
    """Score and flag each sample from its out-of-fold ``probabilities`` (rows in sample
    order); broken files first, then ascending score (ties by path)."""
    labels = np.array([s.label for s in samples], dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    given = probabilities[np.arange(len(labels)), labels]
    predicted = probabilities.argmax(axis=1)
    confident = confident_classes(probabilities, labels)
    flagged = (confident >= 0) & (confident != labels)
    suggested = np.where(flagged, confident, predicted)
    scored = [
        LabelIssue(
            path=sample.path,
            given_label=class_names[sample.label],
            suggested_label=class_names[int(suggested[i])],
            score=float(given[i]),
            suggested_probability=float(probabilities[i, suggested[i]]),
            flagged=bool(flagged[i]),
        )
        for i, sample in enumerate(samples)
    ]
    scored.sort(key=lambda issue: (issue.score, issue.path))
    accuracy = float((predicted == labels).mean()) if len(labels) else 0.0
    return LabelIssuesInfo(tuple(broken) + tuple(scored), tuple(class_names), len(samples), folds, accuracy, l2, seconds)


def _summary(info: LabelIssuesInfo) -> str:
    broken = sum(1 for issue in info.issues if issue.kind == "broken")
    labels = len(info.flagged) - broken
    text = (
        f"checked {info.images:,} images in {info.folds} folds ({info.out_of_fold_accuracy:.1%} out-of-fold "
        f"agreement with the given labels): {labels} likely label issue{'s' if labels != 1 else ''}"
    )
    if broken:
        text += f", {broken} broken file{'s' if broken != 1 else ''}"
    return text


def _relative(path: str, root: str | os.PathLike[str]) -> str:
    return Path(os.path.relpath(path, Path(root).absolute())).as_posix()
