"""The training engine: :class:`TrainConfig`, :func:`fit` and :func:`evaluate`.

:func:`fit` is a generator of the small events in :mod:`events`; the CLI renders them as a
progress bar and the window as live plots. It runs in whatever thread iterates it, watches a
``threading.Event`` for a cooperative stop, and never forks (DataLoader workers are started
with ``spawn``), so it is safe in a Qt worker thread.

Event order, for a config that passed validation::

    RunStarted                      always first
    Note*                           precision fallback, cache unavailable, resumed from ...
    Progress("caching features")*   only with the feature cache, before the first step
    (StepMetrics* EpochMetrics)*    StepMetrics at most ``max_step_events_per_second``; the
                                    last step of every epoch is always reported
    Note                            e.g. when a gradual unfreeze rebuilds the optimizer
    RunFinished                     always last, exactly once (unless the consumer closes
                                    the generator early)

Epoch and step numbers in events are 1-based (epoch 1 of 5). A :class:`HeadswapError` for
an unusable config, dataset or run folder is raised before ``RunStarted``; anything that
goes wrong afterwards ends the run with ``RunFinished("failed", message)``.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Sampler

from . import feature_cache, runs
from .data import (
    AUGMENT_PRESETS,
    DatasetInfo,
    ImageDataset,
    ImageSample,
    SplitInfo,
    build_transform,
    printable_path,
    split_samples,
)
from .devices import (
    PRECISIONS,
    autocast_context,
    autocast_dtype,
    describe_device,
    resolve_device,
    to_device_batch,
    training_threads,
)
from .errors import HeadswapError, RunFolderError, RunSettingsError
from .events import EpochMetrics, Event, Note, Progress, RunFinished, RunStarted, StepMetrics
from .freezing import (
    FREEZE_POLICIES,
    OPTIMIZERS,
    SCHEDULES,
    apply_freeze,
    build_optimizer,
    build_schedule,
    carry_optimizer_state,
    initial_phase,
    plan_freeze,
    schedule_position,
    set_train_mode,
    trainable_parameters_match_optimizer,
)
from .heads import SPEC_ATTRIBUTE, HeadInfo, HeadSpec, find_heads
from .input_size import fit_input_size
from .metrics import ClassReport, class_report, confusion_matrix
from .preprocessing import Preprocessing
from .run_manifest import KIND_TRAINING_RUN, checkpoint_file, checkpoint_file_name, weights_file, weights_file_name
from .run_store import RunWriter
from .sources import LoadedModel, swap_head
from .tracing import call_model, split_outputs

_log = logging.getLogger(__name__)

AUX_LOSS_WEIGHT = 0.4  # loss = main + 0.4 · mean(auxiliary losses), as in GoogLeNet/Inception
CACHE_MODES = ("auto", "off")
MAX_IMAGE_SIZE = 2048  # a 2048² batch of 32 is 1.6 GB of float input already
RESUME_MAY_CHANGE = frozenset(
    {"epochs", "patience", "device", "precision", "workers", "cpu_threads", "channels_last", "max_step_events_per_second"}
)
"""Settings a resumed run may change: how long and where it runs, not what it learns."""


# --- configuration -----------------------------------------------------------------------------


def suggested_lr(freeze: str) -> float:
    """A learning rate that works for ``freeze`` with AdamW: a new head alone (a linear probe
    on frozen features) needs about ten times the step of fine-tuning pretrained layers, which
    a large step would wreck (measured on the digits demo: 1e-3 → 87 %, 1e-2 → 93 % in 5 epochs)."""
    return 1e-2 if freeze == "head" else 1e-3


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a run trains. Validated on creation
    (:class:`HeadswapError` with a message that names the field)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    optimizer: str = "adamw"  # "adamw" | "sgd" (momentum 0.9)
    schedule: str = "cosine"  # "cosine" (with warm-up) | "onecycle" | "constant"
    warmup_epochs: float = 1.0  # cosine only
    label_smoothing: float = 0.0
    class_weights: bool = False  # weight the loss by inverse class frequency
    grad_clip: float | None = None  # max gradient norm
    freeze: str = "head"  # "head" | "gradual" | "last-k" | "full"
    unfreeze_after: int = 2  # gradual: epochs of head-only training
    last_k: int = 1  # last-k: backbone blocks that train
    backbone_lr_factor: float = 0.1  # backbone lr = lr × this (gradual after unfreeze, last-k, full)
    augment: str = "none"  # "none" | "light" | "strong"
    image_size: int | None = None  # override the model's input size (e.g. 32 for 8×8 digits)
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N" | "mps"
    precision: str = "auto"  # "auto" (bf16 where the GPU has it) | "fp32" | "bf16" | "fp16"; CUDA only
    channels_last: bool | None = None  # None: on CUDA and CPU (measured 1.15–1.5× faster on CPU too)
    workers: int = 0  # DataLoader worker processes (spawned); 0 decodes in this thread
    cpu_threads: int | None = None  # CPU compute threads; None leaves one core for the window
    patience: int | None = None  # early stopping after this many epochs without improvement
    cache_features: str = "auto"  # "auto": cache backbone features when frozen and augment == "none"
    max_step_events_per_second: float = 10.0

    def __post_init__(self) -> None:
        problems = _config_problems(self)
        if problems:
            raise HeadswapError("invalid training settings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict`; unknown keys (from a newer version) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def _config_problems(c: TrainConfig) -> list[str]:
    problems = []

    def check(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    def choice(name: str, value: str, options: Sequence[str]) -> None:
        check(value in options, f"{name} must be one of {', '.join(options)}, not {value!r}")

    check(isinstance(c.epochs, int) and c.epochs >= 1, f"epochs must be ≥ 1, got {c.epochs}")
    check(isinstance(c.batch_size, int) and c.batch_size >= 1, f"batch_size must be ≥ 1, got {c.batch_size}")
    check(math.isfinite(c.lr) and c.lr > 0, f"lr must be a positive number, got {c.lr}")
    check(c.cpu_threads is None or c.cpu_threads >= 1, f"cpu_threads must be ≥ 1, got {c.cpu_threads}")
    check(c.weight_decay >= 0, f"weight_decay must be ≥ 0, got {c.weight_decay}")
    choice("optimizer", c.optimizer, OPTIMIZERS)
    choice("schedule", c.schedule, SCHEDULES)
    check(c.warmup_epochs >= 0, f"warmup_epochs must be ≥ 0, got {c.warmup_epochs}")
    check(0.0 <= c.label_smoothing < 1.0, f"label_smoothing must be in [0, 1), got {c.label_smoothing}")
    check(c.grad_clip is None or c.grad_clip > 0, f"grad_clip must be positive or None, got {c.grad_clip}")
    choice("freeze", c.freeze, FREEZE_POLICIES)
    check(c.unfreeze_after >= 0, f"unfreeze_after must be ≥ 0, got {c.unfreeze_after}")
    check(c.last_k >= 1, f"last_k must be ≥ 1, got {c.last_k}")
    check(c.backbone_lr_factor >= 0, f"backbone_lr_factor must be ≥ 0, got {c.backbone_lr_factor}")
    choice("augment", c.augment, AUGMENT_PRESETS)
    check(
        c.image_size is None or (isinstance(c.image_size, int) and 8 <= c.image_size <= MAX_IMAGE_SIZE),
        f"image_size must be between 8 and {MAX_IMAGE_SIZE} pixels, got {c.image_size}",
    )
    check(0.0 < c.val_fraction < 1.0, f"val_fraction must be between 0 and 1, got {c.val_fraction}")
    check(isinstance(c.seed, int) and c.seed >= 0, f"seed must be an integer ≥ 0, got {c.seed}")
    device = (c.device or "").lower()
    check(
        device in ("auto", "cpu", "cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit()),
        f"device must be auto, cpu, cuda, cuda:N or mps, not {c.device!r}",
    )
    choice("precision", c.precision, PRECISIONS)
    check(isinstance(c.workers, int) and c.workers >= 0, f"workers must be ≥ 0, got {c.workers}")
    check(c.patience is None or c.patience >= 1, f"patience must be ≥ 1 or None, got {c.patience}")
    choice("cache_features", c.cache_features, CACHE_MODES)
    check(c.max_step_events_per_second > 0, "max_step_events_per_second must be positive")
    return problems


# --- evaluation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalResult:
    """Per-sample results of :func:`evaluate`, in the loader's sample order."""

    targets: np.ndarray  # (N,) int64
    predictions: np.ndarray  # (N,) int64
    probabilities: np.ndarray  # (N, C) float32, softmax
    losses: np.ndarray  # (N,) float32, cross-entropy per sample

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.predictions == self.targets)) if self.targets.size else float("nan")

    @property
    def loss(self) -> float:
        return float(np.mean(self.losses)) if self.losses.size else float("nan")

    @property
    def num_classes(self) -> int:
        return int(self.probabilities.shape[1]) if self.probabilities.ndim == 2 else 0

    def confusion(self) -> np.ndarray:
        """Rows = true class, columns = predicted class."""
        return confusion_matrix(self.targets, self.predictions, self.num_classes)

    def report(self) -> ClassReport:
        """Per-class precision, recall and F1."""
        return class_report(self.confusion())

    def misclassified(self) -> np.ndarray:
        """Indices of the wrong predictions, highest loss first (for the review gallery)."""
        wrong = np.flatnonzero(self.predictions != self.targets)
        return wrong[np.argsort(-self.losses[wrong], kind="stable")]


def evaluate(
    model: nn.Module,
    loader: Any,
    device: str | torch.device,
    *,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    stop: threading.Event | None = None,
) -> EvalResult | None:
    """Run ``model`` in eval mode over ``loader`` (``(images, labels)`` batches, not shuffled)
    and return per-sample predictions, probabilities and losses; ``None`` if ``stop`` was set.
    The model is moved to ``device`` if it is not there."""
    device = torch.device(device) if isinstance(device, str) else device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    first = next(model.parameters(), None)
    if first is not None and first.device != device:
        model.to(device)
    model.eval()
    amp = autocast_context(device, autocast_dtype)
    targets, predictions, probabilities, losses = [], [], [], []
    with torch.no_grad():
        for images, labels in loader:
            if stop is not None and stop.is_set():
                return None
            images = to_device_batch(images, device, channels_last)
            labels = labels.to(device, non_blocking=True)
            with amp:
                logits, _ = split_outputs(call_model(model, images))
            logits = logits.float()
            losses.append(F.cross_entropy(logits, labels, reduction="none").cpu())
            probabilities.append(logits.softmax(dim=1).cpu())
            predictions.append(logits.argmax(dim=1).cpu())
            targets.append(labels.cpu())
    if not targets:
        return EvalResult(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0), np.float32), np.zeros(0, np.float32))
    return EvalResult(
        torch.cat(targets).numpy().astype(np.int64),
        torch.cat(predictions).numpy().astype(np.int64),
        torch.cat(probabilities).numpy().astype(np.float32),
        torch.cat(losses).numpy().astype(np.float32),
    )


def build_eval_loader(
    samples: Sequence[ImageSample],
    preprocessing: Preprocessing,
    *,
    batch_size: int = 64,
    workers: int = 0,
    device: torch.device | None = None,
) -> DataLoader:
    """A DataLoader over ``samples`` with the model's eval transform, in sample order."""
    dataset = ImageDataset(samples, build_transform(preprocessing, "none", train=False))
    return _make_loader(dataset, batch_size=batch_size, sampler=None, workers=workers, device=device)


def compute_loss(output: Any, targets: torch.Tensor, criterion: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, main logits)`` for a model's raw output: the main loss, plus
    ``AUX_LOSS_WEIGHT`` × the mean of the auxiliary losses for models that return auxiliary
    logits in training mode (GoogLeNet, Inception v3)."""
    logits, aux = split_outputs(output)
    loss = criterion(logits, targets)
    if aux:
        loss = loss + AUX_LOSS_WEIGHT * torch.stack([criterion(a, targets) for a in aux]).mean()
    return loss, logits


# --- fit ---------------------------------------------------------------------------------------


def fit(
    loaded: LoadedModel,
    dataset: DatasetInfo,
    config: TrainConfig,
    run_dir: str | os.PathLike[str] | None,
    *,
    stop: threading.Event | None = None,
    resume: bool = False,
    head_spec: HeadSpec | None = None,
    heads: Sequence[HeadInfo] | None = None,
    overwrite: bool = False,
) -> Iterator[Event]:
    """Train ``loaded.model`` on ``dataset``; a generator of :mod:`events` (see the module
    docstring for their order).

    The caller swaps the head first (``sources.swap_head(loaded, len(dataset.class_names))``);
    when the head's output count differs from the number of classes, ``fit`` swaps it itself
    with ``head_spec`` if one is given, and raises :class:`HeadswapError` otherwise. Output
    ``i`` means ``dataset.class_names[i]`` (sorted folder names); they are stored with the run.

    ``run_dir`` (None: nothing is written) is locked for the whole run and receives the
    starting model, then after every epoch the best weights so far, the resume checkpoint and
    ``headswap.json``, committed so that a kill at any moment leaves a complete epoch (see
    :mod:`run_store`); it is itself a model source for :func:`sources.load_model`. A folder
    that already holds a run is refused unless ``overwrite``. ``resume=True`` continues the
    run in ``run_dir`` from its last committed epoch (model, optimizer, schedule, RNG and the
    recorded split), or starts it again in place when no epoch had finished; ``config`` must
    match the recorded settings except :data:`RESUME_MAY_CHANGE` (``epochs`` may be raised to
    train longer). ``heads`` passes heads the caller has already found (the window has them
    from loading), sparing a trace.

    The model is trained in place on the chosen device and ends with the best epoch's
    weights. The head's starting weights come from the caller: seed torch before
    ``swap_head`` for a run that repeats exactly (CPU runs with the same seed and the same
    starting model give identical metrics).

    Basic checks (config, class count, run folder) raise :class:`HeadswapError` right here;
    the rest of the preparation runs on the first ``next()``.
    """
    trainer = _Trainer(loaded, dataset, config, run_dir, stop or threading.Event(), resume, head_spec, heads, overwrite)
    return trainer.run()


def resume_settings_problems(recorded: dict[str, Any], config: TrainConfig) -> list[str]:
    """How ``config`` departs from a run's recorded training settings in ways a resume must
    not: each as "name: X in the run, Y now"."""
    problems = []
    for name, value in config.to_dict().items():
        if name in RESUME_MAY_CHANGE or name not in recorded:
            continue
        if recorded[name] != value and not (isinstance(value, float) and math.isclose(recorded[name], value)):
            problems.append(f"{name}: {recorded[name]!r} in the run, {value!r} now")
    return problems


class _OrderSampler(Sampler[int]):
    """Yields the sample order set for the current epoch (the same order the feature-cache
    path uses, so cached and uncached runs see identical batches)."""

    def __init__(self, size: int):
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


class _Trainer:
    def __init__(
        self,
        loaded: LoadedModel,
        dataset: DatasetInfo,
        config: TrainConfig,
        run_dir: str | os.PathLike[str] | None,
        stop: threading.Event,
        resume: bool,
        head_spec: HeadSpec | None,
        known_heads: Sequence[HeadInfo] | None = None,
        overwrite: bool = False,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise HeadswapError("config must be a TrainConfig")
        if loaded.structure_only:
            raise HeadswapError("the model was loaded for inspection only (no weights); load it with its weights to train")
        self.loaded = loaded
        self.model = loaded.model
        self.dataset = dataset
        self.config = config
        self.stop = stop
        self.resume = resume
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.notes: list[str] = []
        self.class_names = tuple(dataset.class_names)
        if len(self.class_names) < 2:
            raise HeadswapError(f"{dataset.root} has {len(self.class_names)} classes; training needs at least 2")
        if resume and self.run_dir is None:
            raise HeadswapError("resuming needs the run folder")
        self.preprocessing = (
            loaded.preprocessing.with_input_size(config.image_size) if config.image_size else loaded.preprocessing
        )
        if self.preprocessing.input_size != loaded.preprocessing.input_size:  # before the folder is touched
            resized = fit_input_size(self.model, self.preprocessing.input_size, loaded.preprocessing.input_size)
            if resized:
                self.notes.append(resized)
        # The folder's lock comes before any check of what it holds, so two runs started at
        # the same moment cannot both find it empty.
        self.committed_epochs = 0  # epochs the folder holds as committed; weights_name is its best
        self.writer = RunWriter(self.run_dir, resume=resume, overwrite=overwrite) if self.run_dir is not None else None
        try:
            self.recorded = dict(self.writer.manifest) if resume and self.writer is not None else {}
            self._check_resume(self.recorded)
            self.heads = self._check_heads(head_spec, known_heads)
            self.head_paths = [h.path for h in self.heads]
            checkpoint = checkpoint_file(self.recorded) if self.recorded else None
            self.checkpoint = runs.read_checkpoint(self.run_dir / checkpoint) if checkpoint and self.run_dir else None
            self.weights_name = weights_file(self.recorded) if self.recorded else weights_file_name(0)
            self.checkpoint_name = checkpoint
            self.device = resolve_device(config.device)
        except BaseException:
            self._release_folder()
            raise

    def _check_resume(self, recorded: dict[str, Any]) -> None:
        if not self.resume:
            return
        if recorded.get("class_names") and tuple(recorded["class_names"]) != self.class_names:
            raise RunSettingsError(
                f"the run in {self.run_dir} was trained on the classes {', '.join(recorded['class_names'])}, "
                f"but {self.dataset.root} has {', '.join(self.class_names)}; resume it on the same image folder"
            )
        problems = resume_settings_problems(recorded.get("training") or {}, self.config)
        if problems:
            raise RunSettingsError(
                f"the run in {self.run_dir} cannot continue with other settings ({'; '.join(problems)}): its "
                "weights were trained with the recorded ones. Resume with the run's own settings (only epochs, "
                "patience, device, precision, workers and threads may change), or start a new run"
            )

    # -- preparation ------------------------------------------------------------------------

    def _check_heads(self, head_spec: HeadSpec | None, known: Sequence[HeadInfo] | None) -> list[HeadInfo]:
        n = len(self.class_names)
        names = dict(self.model.named_modules())
        if known and all(h.path in names for h in known):
            heads = list(known)  # the caller traced them already; a second trace would cost seconds
        else:
            heads = find_heads(self.model, self.preprocessing.input_size)
        wrong = [h for h in heads if h.out_features != n]
        if wrong and head_spec is not None:
            swap_head(self.loaded, n, head_spec, class_names=self.class_names)
            self.notes.append(f"replaced the head with a new {head_spec.describe()} head for {n} classes")
            heads = find_heads(self.model, self.preprocessing.input_size)
            wrong = [h for h in heads if h.out_features != n]
        if wrong:
            detail = ", ".join(f"{h.path} has {h.out_features}" for h in wrong)
            raise HeadswapError(
                f"the model's head does not fit the data: {dataset_classes(n)} in {self.dataset.root}, but {detail} "
                f"outputs; swap the head for one with {n} outputs first"
            )
        for head in heads:  # a head built elsewhere must be describable, or the run cannot reload
            module = self.model.get_submodule(head.path)
            if hasattr(module, SPEC_ATTRIBUTE):
                continue
            plain_linear = type(module) is nn.Linear and module.bias is not None
            plain_conv = (
                type(module) is nn.Conv2d and module.kernel_size == (1, 1) and module.stride == (1, 1)
                and module.padding == (0, 0) and module.groups == 1 and module.bias is not None
            )
            if plain_linear or plain_conv:
                setattr(module, SPEC_ATTRIBUTE, HeadSpec())
            else:
                self.notes.append(
                    f"the head {head.path} ({type(module).__name__}) was not built by headswap, so the run "
                    "folder will not be able to rebuild the model; swap the head with headswap to fix that"
                )
        return heads

    def _prepare(self) -> None:
        config, device = self.config, self.device
        # split
        fresh_split = split_samples(self.dataset, config.val_fraction, config.seed)
        split = fresh_split
        if self.resume and self.recorded.get("split"):
            split = SplitInfo.from_dict(self.recorded["split"], self.dataset.root)
            if _paths(split) != _paths(fresh_split):
                self.notes.append(
                    f"using the split recorded with the run ({len(split.train)} train, {len(split.val)} val), "
                    "not the one these settings would draw"
                )
            missing = [s.path for s in split.train + split.val if not os.path.isfile(s.path)]
            if missing:
                raise HeadswapError(
                    f"{len(missing)} images of the run's recorded split are missing (e.g. {missing[0]}); "
                    "resume needs the same image folder"
                )
        self.split = split
        self.n_train, self.n_val = len(split.train), len(split.val)
        if self.n_train == 0 or self.n_val == 0:
            raise HeadswapError(f"the split has {self.n_train} training and {self.n_val} validation images; both need at least one")
        batch = config.batch_size
        self.drop_last = self.n_train > batch and self.n_train % batch == 1  # a lone image breaks BatchNorm
        self.steps_per_epoch = self.n_train // batch if self.drop_last else math.ceil(self.n_train / batch)

        # loss
        weight = None
        if config.class_weights:
            counts = np.bincount([s.label for s in split.train], minlength=len(self.class_names)).astype(np.float64)
            inverse = np.divide(counts.sum(), len(self.class_names) * counts, out=np.zeros_like(counts), where=counts > 0)
            weight = torch.tensor(inverse, dtype=torch.float32, device=device)
        self.criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)

        # device, precision, layout
        self.autocast_dtype = autocast_dtype(config.precision, device)
        if config.precision in ("bf16", "fp16") and self.autocast_dtype is None:
            self.notes.append(f"mixed precision runs on CUDA only; training in fp32 on {device}")
        # Channels-last speeds convolutions up on CUDA and on CPU (oneDNN): resnet18 training steps
        # 0.64 → 0.56 s, the demo's forward 0.28 → 0.18 s per 64 images on one CPU thread.
        supported = device.type in ("cuda", "cpu")
        self.channels_last = supported if config.channels_last is None else bool(config.channels_last and supported)
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None
        self.sync_every_step = device.type != "cuda"
        self.previous_threads = None
        if device.type == "cpu":
            self.previous_threads = torch.get_num_threads()
            torch.set_num_threads(self.config.cpu_threads or training_threads())
        try:
            self.model.to(device)
            if self.channels_last:
                self.model.to(memory_format=torch.channels_last)
            _align_storage(self.model)
        except torch.cuda.OutOfMemoryError as error:
            raise HeadswapError(f"the model does not fit into the memory of {device}; choose a smaller model or the CPU") from error

        # freezing
        phase = self.checkpoint.state["phase"] if self.checkpoint else initial_phase(config.freeze)
        self.plan = plan_freeze(self.model, self.head_paths, config.freeze, phase, last_k=config.last_k)
        apply_freeze(self.model, self.plan)

        # feature cache
        self.eval_transform = build_transform(self.preprocessing, "none", train=False)
        self.cache_head: str | None = None
        if config.cache_features == "auto" and config.freeze == "head" and config.augment == "none":
            head_path, reason = feature_cache.cacheable_head(self.heads)
            if head_path is not None:
                probe = torch.stack([self.eval_transform(_load(s)) for s in self.split.val[:4]]).to(device)
                ok, reason = feature_cache.cache_check(self.model, head_path, probe)
                if ok:
                    self.cache_head = head_path
            if self.cache_head is None:
                self.notes.append(f"features are not cached: {reason}; every epoch runs the whole model")

        # data
        self.loader_generator = torch.Generator()
        if self.cache_head is None:
            train_transform = build_transform(self.preprocessing, config.augment, train=True)
            self.train_sampler = _OrderSampler(self.n_train)
            self.train_loader = _make_loader(
                ImageDataset(split.train, train_transform), batch_size=batch, sampler=self.train_sampler,
                workers=config.workers, device=device, generator=self.loader_generator, drop_last=self.drop_last,
            )
            self.val_loader = _make_loader(
                ImageDataset(split.val, self.eval_transform), batch_size=batch, sampler=None,
                workers=config.workers, device=device,
            )

        # optimizer, schedule, resume
        self.records: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.best_accuracy = -math.inf
        self.best_loss = math.inf
        self.since_best = 0
        self.start_epoch = 0
        self.global_step = 0
        self._build_optimizer(fresh=True)
        if self.checkpoint is not None:
            self._restore(self.checkpoint)
        else:
            if self.resume:
                self.notes.append("no epoch of this run had finished; it starts again from its first epoch, in place")
            torch.manual_seed(config.seed)
        self.best_snapshot: dict[str, torch.Tensor] | None = None
        self.epoch_seconds: list[float] = []
        self.started_at = _now()

    def _phase_epochs(self) -> tuple[int, int]:
        """(first epoch, number of epochs) the current phase's schedule spans."""
        c = self.config
        if c.freeze == "gradual":
            if self.plan.phase == "head":
                return 0, max(1, min(c.unfreeze_after, c.epochs))
            return c.unfreeze_after, max(1, c.epochs - c.unfreeze_after)
        return 0, c.epochs

    def _build_optimizer(self, fresh: bool) -> None:
        c = self.config
        old = getattr(self, "optimizer", None)
        self.optimizer = build_optimizer(
            self.model, self.plan, kind=c.optimizer, lr=c.lr, weight_decay=c.weight_decay,
            backbone_lr_factor=c.backbone_lr_factor,
        )
        if old is not None and not fresh:
            carry_optimizer_state(old, self.optimizer)
        self.trainable = [p for group in self.optimizer.param_groups for p in group["params"]]
        self._build_schedule(start_step=0)
        assert trainable_parameters_match_optimizer(self.model, self.optimizer)

    def _build_schedule(self, start_step: int) -> None:
        """The current phase's schedule over ``self.optimizer``, ``start_step`` steps in; it
        sets the groups' lr from their ``initial_lr``, so it comes after an optimizer load."""
        c = self.config
        _, phase_epochs = self._phase_epochs()
        self.schedule = build_schedule(
            c.schedule, self.optimizer, epochs=phase_epochs, steps_per_epoch=self.steps_per_epoch,
            warmup_epochs=c.warmup_epochs, start_step=start_step,
        )

    def _restore(self, checkpoint: runs.Checkpoint) -> None:
        state = checkpoint.state
        try:
            self.model.load_state_dict(checkpoint.model_state, strict=True)
        except RuntimeError as error:
            raise HeadswapError(
                f"the checkpoint in {self.run_dir} does not fit this model ({str(error).splitlines()[0]}); "
                "resume with the model the run trained (sources.load_model(run_dir))"
            ) from error
        configured = [(g["initial_lr"], g["weight_decay"]) for g in self.optimizer.param_groups]
        runs.load_optimizer_state(self.optimizer, checkpoint.optimizer_tensors, state["optimizer_layout"])
        for group, (initial_lr, weight_decay) in zip(self.optimizer.param_groups, configured):
            group["initial_lr"], group["weight_decay"] = initial_lr, weight_decay  # this config's values
        self._build_schedule(start_step=schedule_position(state["schedule"]))
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        rng = state.get("rng", {})
        if rng.get("torch"):
            torch.set_rng_state(torch.tensor(rng["torch"], dtype=torch.uint8))
        if rng.get("cuda") and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in rng["cuda"]])
        self.start_epoch = checkpoint.epoch
        self.global_step = int(state.get("global_step", 0))
        best = state.get("best") or {}
        self.best_epoch = best.get("epoch")
        if self.best_epoch is not None:
            self.best_accuracy = float(best["val_accuracy"])
            self.best_loss = float(best["val_loss"])
        self.since_best = int(state.get("since_best", 0))
        self.records = [r for r in self.recorded.get("epochs", []) if int(r["epoch"]) <= self.start_epoch]
        self.notes.append(f"resumed after epoch {self.start_epoch} of {self.config.epochs} ({self.plan.description})")

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> Generator[Event, None, None]:
        try:
            self._prepare()
            if self.writer is not None:  # the starting model first: the folder loads from now on
                self._commit({} if self.resume else {self.weights_name: runs.weights_writer(self.model)}, finished=None)
        except BaseException:
            self._cleanup()
            raise
        reason, message = "failed", ""
        try:
            yield RunStarted(
                class_names=self.class_names,
                train_size=self.n_train,
                val_size=self.n_val,
                device=describe_device(self.device),
                features_cached=self.cache_head is not None,
                epochs=self.config.epochs,
                steps_per_epoch=self.steps_per_epoch,
                start_epoch=self.start_epoch + 1,
                run_dir=str(self.run_dir) if self.run_dir is not None else None,
            )
            for note in self.notes:
                yield Note(note)
            try:
                reason, message = yield from self._train()
            except RunFolderError as error:  # the disk refused; the last commit stands
                reason, message = "failed", str(error)
                self._release_folder()
            except (torch.cuda.OutOfMemoryError, MemoryError) as error:
                reason, message = "failed", self._oom_message(error)
            except RuntimeError as error:
                if "out of memory" in str(error).lower():
                    reason, message = "failed", self._oom_message(error)
                else:
                    reason, message = "failed", _describe(error)
            except Exception as error:  # noqa: BLE001 - reported in RunFinished, the process lives on
                reason, message = "failed", _describe(error)
            message = self._finish(reason, message)
            yield RunFinished(
                reason=reason,  # type: ignore[arg-type]
                message=message,
                best_epoch=self.best_epoch,
                best_val_accuracy=self.best_accuracy if self.best_epoch is not None else None,
                run_dir=str(self.run_dir) if self.run_dir is not None else None,
                saved_epochs=self.committed_epochs if self.run_dir is not None else None,
            )
        finally:
            self._cleanup()

    def _train(self) -> Generator[Event, None, tuple[str, str]]:
        c = self.config
        if self.start_epoch >= c.epochs:
            return "completed", f"the run already finished all {c.epochs} epochs; raise the number of epochs to train longer"
        if self.cache_head is not None:
            built = yield from self._build_cache()
            if not built:
                return "stopped", "stopped while caching features; nothing was trained"
        for epoch in range(self.start_epoch, c.epochs):
            if self.stop.is_set():
                return "stopped", self._stopped_message(epoch)
            if c.freeze == "gradual" and self.plan.phase == "head" and epoch >= c.unfreeze_after:
                yield Note(self._unfreeze(epoch))
            started = time.perf_counter()
            outcome = yield from self._train_epoch(epoch)
            if outcome is not None:
                return outcome
            train_loss, train_accuracy, images_per_second = self._epoch_train
            validation = self._validate()
            if validation is None:
                return "stopped", self._stopped_message(epoch)
            val_loss, val_accuracy = validation
            if not math.isfinite(val_loss):
                return "diverged", self._diverged_message(epoch + 1, None)
            is_best = val_accuracy > self.best_accuracy or (val_accuracy == self.best_accuracy and val_loss < self.best_loss)
            if is_best:
                self.best_epoch, self.best_accuracy, self.best_loss = epoch + 1, val_accuracy, val_loss
                self.since_best = 0
            else:
                self.since_best += 1
            seconds = time.perf_counter() - started
            self.epoch_seconds.append(seconds)
            record = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "train_accuracy": train_accuracy,
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "lr": self._lr(),
                "images_per_second": images_per_second,
                "seconds": seconds,
                "phase": self.plan.phase,
                "is_best": is_best,
            }
            self.records.append(record)
            self._save_epoch(epoch + 1, is_best)
            remaining = c.epochs - epoch - 1
            yield EpochMetrics(
                epoch=epoch + 1,
                epochs=c.epochs,
                train_loss=train_loss,
                train_accuracy=train_accuracy,
                val_loss=val_loss,
                val_accuracy=val_accuracy,
                lr=record["lr"],
                images_per_second=images_per_second,
                seconds=seconds,
                eta_seconds=float(np.mean(self.epoch_seconds)) * remaining,
                is_best=is_best,
            )
            if c.patience is not None and self.since_best >= c.patience and remaining > 0:
                return "early-stopped", (
                    f"no improvement for {self.since_best} epochs (patience {c.patience}); "
                    f"best val accuracy {self.best_accuracy:.1%} at epoch {self.best_epoch}"
                )
        return "completed", f"trained {c.epochs} epochs; best val accuracy {self.best_accuracy:.1%} at epoch {self.best_epoch}"

    def _build_cache(self) -> Generator[Event, None, bool]:
        """Run the frozen backbone once over the training and validation images (one loader,
        so worker processes start once) and keep the head's inputs."""
        c, device = self.config, self.device
        total = self.n_train + self.n_val
        yield Progress(feature_cache.CACHE_STAGE, 0, total)
        samples = self.split.train + self.split.val
        loader = _make_loader(ImageDataset(samples, self.eval_transform), batch_size=c.batch_size, sampler=None, workers=c.workers, device=device)
        try:
            cached = yield from feature_cache.extract_features(
                self.model, self.cache_head, loader, device, total=total,
                autocast_dtype=self.autocast_dtype, channels_last=self.channels_last, stop=self.stop,
                max_events_per_second=c.max_step_events_per_second,
            )
        finally:
            _close_loader(loader)
        if cached is None:
            return False
        n = self.n_train
        self.cache_train = feature_cache.CachedSplit(cached.features[:n], cached.labels[:n])
        self.cache_val = feature_cache.CachedSplit(cached.features[n:], cached.labels[n:])
        self.head = self.model.get_submodule(self.cache_head)
        return True

    def _unfreeze(self, epoch: int) -> str:
        self.plan = plan_freeze(self.model, self.head_paths, self.config.freeze, "full")
        apply_freeze(self.model, self.plan)
        self._build_optimizer(fresh=False)
        return (
            f"epoch {epoch + 1}: the backbone is unfrozen and trains at lr × {self.config.backbone_lr_factor:g}; "
            "optimizer and schedule rebuilt"
        )

    def _train_epoch(self, epoch: int) -> Generator[Event, None, tuple[str, str] | None]:
        c, device = self.config, self.device
        set_train_mode(self.model, self.plan)
        order = epoch_order(c.seed, epoch, self.n_train)
        cached = self.cache_head is not None
        if cached:
            batches: Iterator[Any] = feature_cache.batches(self.cache_train, c.batch_size, order, drop_last=self.drop_last)
        else:
            self.train_sampler.order = order.tolist()
            self.loader_generator.manual_seed(c.seed * 1_000_003 + epoch + 500_009)  # worker seeds
            batches = iter(self.train_loader)
        steps = self.steps_per_epoch
        interval = 1.0 / c.max_step_events_per_second
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        window_loss = torch.zeros((), device=device)
        seen = window_images = 0
        started = window_started = last_event = time.perf_counter()
        amp = autocast_context(device, self.autocast_dtype)
        optimizer, scaler = self.optimizer, self.scaler
        for step, (inputs, targets) in enumerate(batches, 1):
            inputs = to_device_batch(inputs, device, self.channels_last)
            targets = targets.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with amp:
                output = self.head(inputs) if cached else call_model(self.model, inputs)
                loss, logits = compute_loss(output, targets, self.criterion)
            if scaler is not None:
                scaler.scale(loss).backward()
                if c.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(self.trainable, c.grad_clip)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if c.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(self.trainable, c.grad_clip)
                optimizer.step()
            lr = optimizer.param_groups[0]["lr"]
            self._last_lr = lr
            self.schedule.step()
            self.global_step += 1
            n = int(targets.shape[0])
            detached = loss.detach().float() * n
            loss_sum += detached
            window_loss += detached
            correct += (logits.detach().argmax(dim=1) == targets).sum()
            seen += n
            window_images += n
            if self.sync_every_step and not math.isfinite(float(detached)):
                return "diverged", self._diverged_message(epoch + 1, step)
            now = time.perf_counter()
            if step == steps or now - last_event >= interval:
                mean_loss = float(window_loss) / window_images
                if not math.isfinite(mean_loss):
                    return "diverged", self._diverged_message(epoch + 1, step)
                yield StepMetrics(
                    epoch=epoch + 1, step=step, steps_per_epoch=steps, global_step=self.global_step,
                    loss=mean_loss, lr=lr, images_per_second=window_images / max(now - window_started, 1e-9),
                )
                window_loss.zero_()
                window_images = 0
                window_started = last_event = time.perf_counter()
            if self.stop.is_set():
                return "stopped", self._stopped_message(epoch)
        if seen == 0:
            raise HeadswapError("the training split produced no batches")
        elapsed = max(time.perf_counter() - started, 1e-9)
        self._epoch_train = (float(loss_sum) / seen, int(correct) / seen, seen / elapsed)
        return None

    def _validate(self) -> tuple[float, float] | None:
        device = self.device
        self.model.eval()
        amp = autocast_context(device, self.autocast_dtype)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        if self.cache_head is not None:
            batches: Any = feature_cache.batches(self.cache_val, self.config.batch_size)
        else:
            batches = self.val_loader
        with torch.no_grad():
            for inputs, targets in batches:
                if self.stop.is_set():
                    return None
                inputs = to_device_batch(inputs, device, self.channels_last)
                targets = targets.to(device, non_blocking=True)
                with amp:
                    logits = self.head(inputs) if self.cache_head is not None else split_outputs(call_model(self.model, inputs))[0]
                loss_sum += F.cross_entropy(logits.float(), targets, reduction="sum")
                correct += (logits.argmax(dim=1) == targets).sum()
                seen += int(targets.shape[0])
        return float(loss_sum) / seen, int(correct) / seen

    # -- saving -----------------------------------------------------------------------------

    def _save_epoch(self, epoch: int, is_best: bool) -> None:
        if self.writer is None:
            if is_best:
                self.best_snapshot = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            return
        rng: dict[str, Any] = {"torch": torch.get_rng_state().tolist()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
        state = {
            "epoch": epoch,
            "global_step": self.global_step,
            "phase": self.plan.phase,
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "best": (
                {"epoch": self.best_epoch, "val_accuracy": self.best_accuracy, "val_loss": self.best_loss}
                if self.best_epoch is not None else None
            ),
            "since_best": self.since_best,
            "rng": rng,
            "config": self.config.to_dict(),
            "features_cached": self.cache_head is not None,
            "saved_at": _now(),
        }
        weights = weights_file_name(epoch) if is_best else self.weights_name
        checkpoint = checkpoint_file_name(epoch)
        new = {checkpoint: runs.checkpoint_writer(self.model, self.optimizer, state)}
        if is_best:
            new[weights] = runs.weights_writer(self.model)
        self._commit(new, finished=None, weights=weights, checkpoint=checkpoint)

    def _commit(
        self, new_files: dict[str, Any], finished: str | None, *, weights: str | None = None,
        checkpoint: str | None = None,
    ) -> None:
        """Commit the folder's next state: ``new_files``, then the manifest naming them (the
        weights and checkpoint files it names change only once that has succeeded)."""
        assert self.writer is not None
        weights = weights or self.weights_name
        checkpoint = checkpoint or self.checkpoint_name
        loaded = replace(
            self.loaded,
            preprocessing=self.preprocessing,
            class_names=self.class_names,
            source=self.recorded.get("source", self.loaded.source),
        )
        manifest = {
            **runs.model_metadata(loaded, self.heads),
            "kind": KIND_TRAINING_RUN,
            "weights_file": weights,
            "checkpoint_file": checkpoint,
            "class_names": list(self.class_names),
            "training": self.config.to_dict(),
            "split": self.split.to_dict(self.dataset.root),
            "dataset_root": str(self.dataset.root),
            "skipped_files": [
                {"path": printable_path(s.path), "reason": s.reason} for s in self.dataset.skipped
            ],
            "epochs": list(self.records),
            "best_epoch": self.best_epoch,
            "best_val_accuracy": self.best_accuracy if self.best_epoch is not None else None,
            "seed": self.config.seed,
            "features_cached": self.cache_head is not None,
            "device": describe_device(self.device),
            "finished": finished,
            "started_at": self.recorded.get("started_at") or self.started_at,
            "updated_at": _now(),
        }
        self.writer.commit(manifest, new_files)
        self.weights_name, self.checkpoint_name = weights, checkpoint
        self.committed_epochs = len(manifest["epochs"])

    def _finish(self, reason: str, message: str) -> str:
        """Put the best epoch's weights back into the model and record how the run ended."""
        try:
            kept = self.run_dir / self.weights_name if self.run_dir is not None else None
            if kept is not None and kept.is_file():
                # the best epoch, or — when none finished — the starting model: a run stopped
                # in its first epoch leaves no half-trained weights behind
                from safetensors.torch import load_file

                self.model.load_state_dict(load_file(str(kept)))
            elif self.best_epoch is not None and self.best_snapshot is not None:
                self.model.load_state_dict(self.best_snapshot)
            self.model.eval()
            if self.writer is not None:
                self._commit({}, finished=reason)
        except Exception as error:  # noqa: BLE001 - the run is over; say what else went wrong
            message = f"{message} (also: {_describe(error)})"
        return message

    def _release_folder(self) -> None:
        writer, self.writer = getattr(self, "writer", None), None
        if writer is not None:
            writer.close()

    def _cleanup(self) -> None:
        self._release_folder()
        for name in ("train_loader", "val_loader"):
            loader = getattr(self, name, None)
            if loader is not None:
                _close_loader(loader)
        if getattr(self, "previous_threads", None) is not None:
            torch.set_num_threads(self.previous_threads)
            self.previous_threads = None
        self.cache_train = self.cache_val = None  # type: ignore[assignment]
        if getattr(self, "channels_last", False):
            # Hand back the memory layout the model came in, so the trained model computes
            # bit-identically to its reloaded run folder.
            self.model.to(memory_format=torch.contiguous_format)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- messages ---------------------------------------------------------------------------

    def _lr(self) -> float:
        """The learning rate of the head in the last step taken."""
        return float(getattr(self, "_last_lr", self.optimizer.param_groups[0]["lr"]))

    def _stopped_message(self, epoch: int) -> str:
        if self.best_epoch is None:
            kept = "; the model is as it was before the run" if self.run_dir is not None else ""
            return f"stopped in epoch {epoch + 1}, before any epoch finished{kept}"
        return f"stopped in epoch {epoch + 1}; the best epoch ({self.best_epoch}, val accuracy {self.best_accuracy:.1%}) is kept"

    def _diverged_message(self, epoch: int, step: int | None) -> str:
        where = f"epoch {epoch}" + (f", step {step}" if step else "")
        kept = (
            f"; the best epoch ({self.best_epoch}) is kept" if self.best_epoch is not None else "; no epoch had finished"
        )
        return f"the loss became NaN or infinite in {where}; lower the learning rate (now {self.config.lr:g}) or set grad_clip{kept}"

    def _oom_message(self, error: BaseException) -> str:
        batch = self.config.batch_size
        hint = f"try batch size {max(1, batch // 2)}"
        if self.autocast_dtype is None and self.device.type == "cuda":
            hint += " or mixed precision (bf16)"
        return f"out of memory on {self.device} at batch size {batch}; {hint}"


# --- helpers -----------------------------------------------------------------------------------


def dataset_classes(n: int) -> str:
    return f"{n} class{'es' if n != 1 else ''}"


def _make_loader(
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


def _close_loader(loader: DataLoader) -> None:
    """Shut persistent workers down now, on this thread."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None:
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        loader._iterator = None


def _align_storage(model: nn.Module) -> None:
    """Give weights that are views into a loaded file's buffer (safetensors) their own
    64-byte-aligned memory: vectorised CPU kernels round differently on unaligned data, which
    would make a resumed run drift from an uninterrupted one in the last bits."""
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.device.type == "cpu" and tensor.numel() and tensor.data_ptr() % 64:
                tensor.data = tensor.data.clone()


def _load(sample: ImageSample) -> Any:
    from .images import load_image

    return load_image(sample.path)


def _paths(split: SplitInfo) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(sorted(s.path for s in split.train)), tuple(sorted(s.path for s in split.val))


def _describe(error: BaseException) -> str:
    if isinstance(error, HeadswapError):
        return str(error)
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if "Expected more than 1 value per channel when training" in text:
        return "BatchNorm layers cannot train on batches of one image; set the batch size to 2 or more"
    # Not a problem the user can fix from the settings: a bug here or in the model's code.
    # The traceback goes to the log (stderr); the message keeps what torch said, not its class.
    _log.error("training stopped by an unexpected error", exc_info=error)
    said = f" (it said: {text})" if text else ""
    return f"an unexpected error in the model or in headswap stopped training{said}; the traceback is in the terminal's output"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
