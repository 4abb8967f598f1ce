"""The training engine's orchestrator: :func:`fit` sequences a run, the pieces live apart.

As in torchvision's reference scripts, each step has its own small module: the settings
(:mod:`train_config`), the loaders (:mod:`loaders`), one epoch of steps
(:mod:`train_steps`), validation and evaluation (:mod:`evaluation`), the feature cache that
the head learns from while it fills (:mod:`streaming`, :mod:`feature_cache`), freezing and
optimizers (:mod:`freezing`) and the run folder (:mod:`run_store`). This module only checks,
prepares, sequences epochs and commits; the names the rest of the app uses are re-exported.

:func:`fit` is a generator of the small events in :mod:`events`; the CLI renders them as a
progress bar and the window as live plots. It runs in whatever thread iterates it, watches a
``threading.Event`` for a cooperative stop, and never forks (DataLoader workers are started
with ``spawn``), so it is safe in a Qt worker thread.

Under ``torchrun`` (see :mod:`distributed`) every rank runs this same generator: the ranks
share each batch of the single-process run (a model that trains is wrapped in DDP; a head on
cached features trains on the gathered cache on every rank), agree on stops and figures after
each step and epoch, and only rank 0 writes the run folder.

Event order, for a config that passed validation::

    RunStarted                      always first
    Note*                           precision fallback, cache unavailable, resumed from ...
    (Progress("caching features") | CacheValidation)*
                                    only with the feature cache, before the first epoch;
                                    CacheValidation when the head learns while it fills
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
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import distributed, feature_cache, runs
from .data import DatasetInfo, ImageDataset, SplitInfo, build_transform, printable_path, split_samples
from .devices import autocast_dtype, describe_device, resolve_device, training_threads
from .distributed import AgreedStop, batch_slices, loss_weights
from .errors import DistributedError, HeadswapError, RunFolderError, RunSettingsError
from .evaluation import EvalResult, evaluate, model_logits, validate
from .events import EpochMetrics, Event, Note, RunFinished, RunStarted
from .freezing import (
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
from .loaders import OrderSampler, build_eval_loader, close_loader, epoch_order, load_sample, make_loader
from .run_manifest import (
    KIND_TRAINING_RUN,
    checkpoint_file,
    checkpoint_file_name,
    read_manifest,
    weights_file,
    weights_file_name,
)
from .run_store import RunWriter
from .sources import LoadedModel, swap_head
from .streaming import LR_FACTOR as STREAM_LR_FACTOR
from .streaming import HeadLearner, stream_cache
from .tracing import call_model
from .train_config import RESUME_MAY_CHANGE, TrainConfig, resume_settings_problems, suggested_lr
from .train_steps import AUX_LOSS_WEIGHT, Optimisation, compute_loss, train_one_epoch

__all__ = [  # the engine's public face; the pieces live in their own modules
    "AUX_LOSS_WEIGHT", "RESUME_MAY_CHANGE", "EvalResult", "TrainConfig", "build_eval_loader", "compute_loss",
    "evaluate", "fit", "resume_settings_problems", "suggested_lr",
]

_log = logging.getLogger(__name__)


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
        self.committed_epochs = 0  # epochs the folder holds as committed; weights_name is its best
        # Under torchrun: the process group, and this rank's device (its own GPU); all ranks
        # read the folder, rank 0 alone locks and writes it.
        self.group, self.device = distributed.join(resolve_device(config.device))
        self.stop: threading.Event | AgreedStop = AgreedStop(stop, self.group) if self.group.distributed else stop
        self.writer: RunWriter | None = None
        try:
            with self.group.together("open the run folder and check the model"):
                # The folder's lock comes before any check of what it holds, so two runs
                # started at the same moment cannot both find it empty.
                if self.run_dir is not None and self.group.is_main:
                    self.writer = RunWriter(self.run_dir, resume=resume, overwrite=overwrite)
                self.recorded = self._recorded_manifest()
                self._check_resume(self.recorded)
                self.heads = self._check_heads(head_spec, known_heads)
                self.head_paths = [h.path for h in self.heads]
                checkpoint = checkpoint_file(self.recorded) if self.recorded else None
                self.checkpoint = runs.read_checkpoint(self.run_dir / checkpoint) if checkpoint and self.run_dir else None
                self.weights_name = weights_file(self.recorded) if self.recorded else weights_file_name(0)
                self.checkpoint_name = checkpoint
        except BaseException:
            self._release_folder()
            self.group.close()
            raise

    def _recorded_manifest(self) -> dict[str, Any]:
        """What the folder holds, when resuming: read by the writer on rank 0, read as it is
        by the other ranks (the writer only removes files the manifest does not name)."""
        if not self.resume or self.run_dir is None:
            return {}
        return dict(self.writer.manifest) if self.writer is not None else read_manifest(self.run_dir)

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
        batch, world = config.batch_size, self.group.world_size
        if min(batch, self.n_train, self.n_val) < world:
            raise DistributedError(
                f"{world} processes share every batch and the validation split, so the batch size ({batch}), "
                f"the training split ({self.n_train}) and the validation split ({self.n_val}) need at least "
                f"{world} images each; raise the batch size or launch fewer processes"
            )
        # A lone image breaks BatchNorm; under torchrun a last batch smaller than the number
        # of ranks would leave one without a share.
        self.drop_last = self.n_train > batch and 0 < self.n_train % batch < max(2, world)
        self.steps_per_epoch = self.n_train // batch if self.drop_last else math.ceil(self.n_train / batch)
        self.rank_batches = batch_slices(range(batch), batch, world, 0)[1][0]  # each rank's share of a batch

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
        self.group.broadcast_module(self.model)  # every rank starts from rank 0's weights

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
                probe = torch.stack([self.eval_transform(load_sample(s)) for s in self.split.val[:4]]).to(device)
                ok, reason = feature_cache.cache_check(self.model, head_path, probe)
                if ok:
                    self.cache_head = head_path
            if self.cache_head is None:
                self.notes.append(f"features are not cached: {reason}; every epoch runs the whole model")

        # data: under torchrun each rank loads its share of every batch (batch_slices drops
        # the last batch itself) and validates its part of the validation split
        self.loader_generator = torch.Generator()
        self.ddp: nn.Module | None = None
        if self.cache_head is None:
            rank = self.group.rank
            train_transform = build_transform(self.preprocessing, config.augment, train=True)
            self.train_sampler = OrderSampler(self.n_train)
            self.train_loader = make_loader(
                ImageDataset(split.train, train_transform), batch_size=self.rank_batches[rank],
                sampler=self.train_sampler, workers=config.workers, device=device, generator=self.loader_generator,
                drop_last=self.drop_last and not self.group.distributed,
            )
            val_part = torch.tensor_split(torch.arange(self.n_val), world)[rank].tolist()
            self.val_loader = make_loader(
                ImageDataset([split.val[i] for i in val_part], self.eval_transform), batch_size=self.rank_batches[rank],
                sampler=None, workers=config.workers, device=device,
            )
            self.val_share = len(val_part)
        if self.group.distributed:
            shares = " + ".join(str(n) for n in self.rank_batches)
            how = (
                "the backbone pass is shared and every rank trains the head on the gathered features"
                if self.cache_head is not None else "the model is wrapped in DistributedDataParallel"
            )
            self.notes.append(
                f"{world} processes ({self.group.backend}) share every batch of {batch} ({shares}); {how}"
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
        self._wrap_for_ranks()
        if self.checkpoint is not None:
            self._restore(self.checkpoint)
        else:
            if self.resume:
                self.notes.append("no epoch of this run had finished; it starts again from its first epoch, in place")
            torch.manual_seed(config.seed)
        self.best_snapshot: dict[str, torch.Tensor] | None = None
        self.epoch_seconds: list[float] = []
        self.started_at = _now()

    def _wrap_for_ranks(self) -> None:
        """Under torchrun, a model that trains (not a head on cached features) is wrapped in
        DDP for what trains now. A cached head trains on the gathered cache on every rank
        instead: it is small, and that way it learns exactly as in one process."""
        if self.group.distributed and self.cache_head is None:
            self.ddp = None  # the old wrapper's gradient hooks go with it
            self.ddp = distributed.data_parallel(self.model, self.group)

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
            with self.group.together("prepare the run"):
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
                    reason, message = "failed", distributed.describe_collective_error(error, self.group) or _describe(error)
            except Exception as error:  # noqa: BLE001 - reported in RunFinished, the process lives on
                reason, message = "failed", distributed.describe_collective_error(error, self.group) or _describe(error)
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
            if self.stop.is_set():  # agreed by all ranks under torchrun
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
        """Run the frozen backbone once over the validation and training images and keep the
        head's inputs; with ``stream_cache`` the head learns from them as they arrive (see
        :mod:`streaming`). A stop leaves the head as it was before the run."""
        c = self.config
        self.head = self.model.get_submodule(self.cache_head)
        starting_head = {k: v.detach().clone() for k, v in self.head.state_dict().items()}
        learner = None
        if c.stream_cache and self.start_epoch == 0:  # a resumed head continues from its checkpoint as it was
            optimizer = build_optimizer(
                self.model, self.plan, kind=c.optimizer, lr=c.lr * STREAM_LR_FACTOR, weight_decay=c.weight_decay,
                backbone_lr_factor=c.backbone_lr_factor,
            )
            learner = HeadLearner(self.head, self._optimisation(self.head, optimizer, schedule=None), c.batch_size, c.seed)
        caches = yield from stream_cache(
            self.model, self.cache_head, self.split.train, self.split.val, self.eval_transform,
            device=self.device, batch_size=c.batch_size, workers=c.workers, seed=c.seed,
            autocast_dtype=self.autocast_dtype, channels_last=self.channels_last, stop=self.stop,
            max_events_per_second=c.max_step_events_per_second, learner=learner, group=self.group,
        )
        if caches is None:
            self.head.load_state_dict(starting_head)
            return False
        self.cache_train, self.cache_val = caches
        return True

    def _unfreeze(self, epoch: int) -> str:
        self.plan = plan_freeze(self.model, self.head_paths, self.config.freeze, "full")
        apply_freeze(self.model, self.plan)
        self._build_optimizer(fresh=False)
        self._wrap_for_ranks()  # DDP reduces the gradients of what trained when it was built
        return (
            f"epoch {epoch + 1}: the backbone is unfrozen and trains at lr × {self.config.backbone_lr_factor:g}; "
            "optimizer and schedule rebuilt"
        )

    def _optimisation(
        self, forward: Any, optimizer: torch.optim.Optimizer, schedule: Any, step_weights: list[float] | None = None,
    ) -> Optimisation:
        scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None
        return Optimisation(
            forward=forward, criterion=self.criterion, optimizer=optimizer, device=self.device, schedule=schedule,
            scaler=scaler if schedule is None else self.scaler, grad_clip=self.config.grad_clip,
            autocast_dtype=self.autocast_dtype, channels_last=self.channels_last,
            check_every_step=self.sync_every_step, step_weights=step_weights,
        )

    def _train_epoch(self, epoch: int) -> Generator[Event, None, tuple[str, str] | None]:
        c = self.config
        set_train_mode(self.model, self.plan)
        order = epoch_order(c.seed, epoch, self.n_train)
        weights = None
        if self.cache_head is not None:
            batches: Any = feature_cache.batches(self.cache_train, c.batch_size, order, drop_last=self.drop_last)
            forward = self.head
        else:
            if self.group.distributed:  # this rank's share of every batch of the one-process order
                self.train_sampler.order, shares = batch_slices(
                    order, c.batch_size, self.group.world_size, self.group.rank, drop_last=self.drop_last,
                )
                weights = loss_weights(shares, self.group.rank)
            else:
                self.train_sampler.order = order.tolist()
            self.loader_generator.manual_seed(c.seed * 1_000_003 + epoch + 500_009)  # worker seeds
            batches = self.train_loader
            model = self.ddp or self.model
            forward = lambda inputs: call_model(model, inputs)  # noqa: E731 - one expression
        outcome = yield from train_one_epoch(
            self._optimisation(forward, self.optimizer, self.schedule, weights), batches, epoch=epoch + 1,
            steps_per_epoch=self.steps_per_epoch, global_step=self.global_step, stop=self.stop,
            max_events_per_second=c.max_step_events_per_second,
        )
        self.global_step = outcome.global_step
        self._last_lr = outcome.lr
        if outcome.status == "diverged":
            return "diverged", self._diverged_message(epoch + 1, outcome.step)
        if outcome.status == "stopped":
            return "stopped", self._stopped_message(epoch)
        if outcome.seen == 0:
            raise HeadswapError("the training split produced no batches")
        if self.ddp is None:  # one process, or a head that every rank trained alike: rank 0's figures
            loss, accuracy, images_per_second = self.group.from_main(
                [outcome.loss, outcome.accuracy, outcome.images_per_second]
            )
        else:  # the ranks' shares, added up
            loss_sum, correct, seen, images_per_second = self.group.sum(
                [outcome.loss * outcome.seen, outcome.accuracy * outcome.seen, outcome.seen, outcome.images_per_second]
            )
            loss, accuracy = loss_sum / seen, round(correct) / seen
        self._epoch_train = (loss, accuracy, images_per_second)
        return None

    def _validate(self) -> tuple[float, float] | None:
        self.model.eval()
        if self.cache_head is not None:
            measured = validate(
                self.head, feature_cache.batches(self.cache_val, self.config.batch_size), self.device,
                autocast_dtype=self.autocast_dtype, stop=self.stop,
            )
            return None if measured is None else tuple(self.group.from_main(measured))  # type: ignore[return-value]
        if self.ddp is None:
            return validate(
                model_logits(self.model), self.val_loader, self.device, autocast_dtype=self.autocast_dtype,
                channels_last=self.channels_last, stop=self.stop,
            )
        # Each rank measures its part with rank 0's BatchNorm statistics (the model rank 0
        # saves); a stop waits for the next step, where the ranks agree on it.
        self.group.broadcast_module(self.model, buffers_only=True)
        measured = validate(
            model_logits(self.model), self.val_loader, self.device, autocast_dtype=self.autocast_dtype,
            channels_last=self.channels_last,
        )
        assert measured is not None  # only a stop ends it early, and it was given none
        loss, accuracy = measured
        loss_sum, correct, seen = self.group.sum([loss * self.val_share, accuracy * self.val_share, self.val_share])
        return loss_sum / seen, round(correct) / seen

    # -- saving -----------------------------------------------------------------------------

    def _save_epoch(self, epoch: int, is_best: bool) -> None:
        if self.writer is None:
            if is_best and self.group.is_main:  # the other ranks' models end with their process
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
            **({"distributed": self._distributed_metadata()} if self.group.distributed else {}),
            "finished": finished,
            "started_at": self.recorded.get("started_at") or self.started_at,
            "updated_at": _now(),
        }
        self.writer.commit(manifest, new_files)
        self.weights_name, self.checkpoint_name = weights, checkpoint
        self.committed_epochs = len(manifest["epochs"])

    def _distributed_metadata(self) -> dict[str, Any]:
        env = distributed.launch_env()
        return {
            "world_size": self.group.world_size,
            "backend": self.group.backend,
            "processes_per_node": env.local_world_size if env is not None else None,
            "batch_size_per_rank": list(self.rank_batches),
            "data_parallel": "ddp" if self.ddp is not None else "gathered feature cache",
        }

    def _finish(self, reason: str, message: str) -> str:
        """Put the best epoch's weights back into the model and record how the run ended."""
        try:
            kept = self.run_dir / self.weights_name if self.run_dir is not None and self.group.is_main else None
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
                close_loader(loader)
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
        self.ddp = None
        self.group.close()

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


def _align_storage(model: nn.Module) -> None:
    """Give weights that are views into a loaded file's buffer (safetensors) their own
    64-byte-aligned memory: vectorised CPU kernels round differently on unaligned data, which
    would make a resumed run drift from an uninterrupted one in the last bits."""
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.device.type == "cpu" and tensor.numel() and tensor.data_ptr() % 64:
                tensor.data = tensor.data.clone()


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
