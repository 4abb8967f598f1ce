"""The training engine's orchestrator: :func:`fit` sequences a run, the pieces live apart.

As in torchvision's reference scripts, each step has its own small module: the settings
(:mod:`train_config`), what a run checks before it trains (:mod:`run_checks`), the loaders
(:mod:`loaders`), the loss and one epoch of steps (:mod:`train_steps`), validation and
evaluation (:mod:`evaluation`), the feature cache that the head learns from while it fills
(:mod:`streaming`, :mod:`feature_cache`), what trains and the optimizer and schedule that
train it (:mod:`optimizer_phase` over :mod:`freezing`), device, precision and CPU threads
(:mod:`devices`), the run's committed record (:mod:`run_record` over :mod:`run_store`) and
the sentences it ends with (:mod:`run_messages`). This module only sequences them; the
names the rest of the app uses are re-exported.

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

import math
import os
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import distributed, feature_cache, runs
from .data import DatasetInfo, build_transform, printable_path
from .devices import cpu_threads, describe_device, is_out_of_memory, resolve_device, training_precision
from .distributed import AgreedStop, batch_slices, loss_weights
from .errors import DistributedError, HeadswapError, RunFolderError
from .evaluation import EvalResult, evaluate, model_logits, validate
from .events import EpochMetrics, Event, Note, RunFinished, RunStarted
from .freezing import build_optimizer, set_train_mode
from .heads import HeadInfo, HeadSpec
from .input_size import fit_input_size
from .loaders import ImageLoaders, build_eval_loader, epoch_order, image_loaders, load_sample
from .optimizer_phase import PhaseOptimizer
from .run_checks import check_heads, check_resume, run_split
from .run_manifest import checkpoint_file, read_manifest, weights_file, weights_file_name
from .run_messages import BestEpoch, describe_failure, diverged_message, out_of_memory_message, stopped_message
from .run_record import RunRecord, now
from .run_store import RunWriter
from .sources import LoadedModel
from .streaming import LR_FACTOR as STREAM_LR_FACTOR
from .streaming import HeadLearner, stream_cache
from .tracing import call_model
from .train_config import RESUME_MAY_CHANGE, TrainConfig, resume_settings_problems, suggested_lr
from .train_steps import AUX_LOSS_WEIGHT, Optimisation, build_criterion, compute_loss, train_one_epoch

__all__ = [  # the engine's public face; the pieces live in their own modules
    "AUX_LOSS_WEIGHT", "RESUME_MAY_CHANGE", "EvalResult", "TrainConfig", "build_eval_loader", "compute_loss",
    "evaluate", "fit", "resume_settings_problems", "suggested_lr",
]
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


@dataclass(frozen=True)
class _RunEnds:
    """How a run ends, when a step within an epoch decided it."""

    reason: str
    message: str


class _Trainer:
    """One run of :func:`fit`: checks, then prepares, sequences the epochs and commits; every
    step it sequences lives in its own module."""

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
        self.loaded, self.model, self.dataset, self.config = loaded, loaded.model, dataset, config
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
        # Under torchrun: the process group, and this rank's device (its own GPU); all ranks
        # read the folder, rank 0 alone locks and writes it.
        self.group, self.device = distributed.join(resolve_device(config.device))
        self.stop: threading.Event | AgreedStop = AgreedStop(stop, self.group) if self.group.distributed else stop
        self.record: RunRecord | None = None
        self.resources = ExitStack()  # what the run holds until it ends: threads, loaders
        writer = None
        try:
            with self.group.together("open the run folder and check the model"):
                # The folder's lock comes before any check of what it holds, so two runs
                # started at the same moment cannot both find it empty.
                if self.run_dir is not None and self.group.is_main:
                    writer = RunWriter(self.run_dir, resume=resume, overwrite=overwrite)
                self.recorded = self._recorded_manifest(writer)
                if resume:
                    check_resume(self.recorded, config, self.class_names, self.run_dir, dataset.root)
                self.heads, notes = check_heads(
                    loaded, self.class_names, self.preprocessing.input_size, dataset.root, head_spec, known_heads,
                )
                self.notes += notes
                checkpoint = checkpoint_file(self.recorded) if self.recorded else None
                self.checkpoint = runs.read_checkpoint(self.run_dir / checkpoint) if checkpoint and self.run_dir else None
                self.record = RunRecord(
                    writer, self.run_dir, checkpoint_name=checkpoint, keeps_snapshot=self.group.is_main,
                    weights_name=weights_file(self.recorded) if self.recorded else weights_file_name(0),
                )
        except BaseException:
            if self.record is not None:
                self.record.close()  # its writer with it
            elif writer is not None:
                writer.close()
            self.group.close()
            raise

    def _recorded_manifest(self, writer: RunWriter | None) -> dict[str, Any]:
        """What the folder holds, when resuming: read by the writer on rank 0, read as it is
        by the other ranks (the writer only removes files the manifest does not name)."""
        if not self.resume or self.run_dir is None:
            return {}
        return dict(writer.manifest) if writer is not None else read_manifest(self.run_dir)

    # -- preparation ------------------------------------------------------------------------

    def _prepare(self) -> None:
        config, device, world = self.config, self.device, self.group.world_size
        self.split, notes = run_split(self.dataset, config, self.recorded if self.resume else None)
        self.notes += notes
        self.n_train, self.n_val = len(self.split.train), len(self.split.val)
        if self.n_train == 0 or self.n_val == 0:
            raise HeadswapError(f"the split has {self.n_train} training and {self.n_val} validation images; both need at least one")
        batch = config.batch_size
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
        self.criterion = build_criterion(
            [s.label for s in self.split.train], len(self.class_names), class_weights=config.class_weights,
            label_smoothing=config.label_smoothing, device=device,
        )
        self.precision = training_precision(config.precision, config.channels_last, device)
        if self.precision.note:
            self.notes.append(self.precision.note)
        self.autocast_dtype, self.channels_last = self.precision.autocast_dtype, self.precision.channels_last
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None
        self.resources.enter_context(cpu_threads(device, config.cpu_threads))
        self._place_model()

        self.phase = PhaseOptimizer(
            self.model, [h.path for h in self.heads], config, self.steps_per_epoch,
            phase=self.checkpoint.state["phase"] if self.checkpoint else None,
        )
        self.eval_transform = build_transform(self.preprocessing, "none", train=False)
        self.cache_head = self._cache_head()
        if self.cache_head is not None and self.precision.features_dtype != self.autocast_dtype:
            self.notes.append(  # the head itself still trains in fp32, on fp32 features
                "the feature pass runs in bf16 on this CPU's AMX units, about 1.7× faster; precision fp32 keeps it in fp32"
            )
        self.loaders: ImageLoaders | None = None
        self.loader_generator = torch.Generator()
        if self.cache_head is None:
            self.loaders = image_loaders(
                self.split.train, self.split.val, build_transform(self.preprocessing, config.augment, train=True),
                self.eval_transform, rank_batches=self.rank_batches, rank=self.group.rank, workers=config.workers,
                device=device, generator=self.loader_generator, drop_last=self.drop_last,
            )
            self.resources.callback(self.loaders.close)
        if self.group.distributed:
            shares = " + ".join(str(n) for n in self.rank_batches)
            how = (
                "the backbone pass is shared and every rank trains the head on the gathered features"
                if self.cache_head is not None else "the model is wrapped in DistributedDataParallel"
            )
            self.notes.append(f"{world} processes ({self.group.backend}) share every batch of {batch} ({shares}); {how}")

        self.best = BestEpoch()
        self.start_epoch = self.global_step = 0
        self.ddp: nn.Module | None = None
        self._wrap_for_ranks()
        if self.checkpoint is not None:
            self._restore(self.checkpoint)
        else:
            if self.resume:
                self.notes.append("no epoch of this run had finished; it starts again from its first epoch, in place")
            torch.manual_seed(config.seed)
        self.epoch_seconds: list[float] = []
        self.started_at = self.recorded.get("started_at") or now()

    def _place_model(self) -> None:
        """The model on this rank's device, in the run's memory layout, every rank starting
        from rank 0's weights."""
        try:
            self.model.to(self.device)
            if self.channels_last:
                self.model.to(memory_format=torch.channels_last)
            _align_storage(self.model)
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            raise HeadswapError(
                f"the model does not fit into the memory of {self.device}; choose a smaller model or the CPU"
            ) from error
        self.group.broadcast_module(self.model)

    def _cache_head(self) -> str | None:
        """The head whose inputs are cached, when only the head trains on unaugmented images
        and the model's output is exactly that head's (checked on a few validation images)."""
        c = self.config
        if not (c.cache_features == "auto" and c.freeze == "head" and c.augment == "none"):
            return None
        probe = torch.stack([self.eval_transform(load_sample(s)) for s in self.split.val[:4]]).to(self.device)
        head_path, reason = feature_cache.usable_head(self.heads, self.model, probe)
        if head_path is None:
            self.notes.append(f"features are not cached: {reason}; every epoch runs the whole model")
        return head_path

    def _wrap_for_ranks(self) -> None:
        """Under torchrun, a model that trains (not a head on cached features) is wrapped in
        DDP for what trains now. A cached head trains on the gathered cache on every rank
        instead: it is small, and that way it learns exactly as in one process."""
        if self.group.distributed and self.cache_head is None:
            self.ddp = None  # the old wrapper's gradient hooks go with it
            self.ddp = distributed.data_parallel(self.model, self.group)

    def _restore(self, checkpoint: runs.Checkpoint) -> None:
        """Continue from ``checkpoint``: model, optimizer and schedule, scaler, RNG, counters
        and the best epoch."""
        state = checkpoint.state
        try:
            self.model.load_state_dict(checkpoint.model_state, strict=True)
        except RuntimeError as error:
            raise HeadswapError(
                f"the checkpoint in {self.run_dir} does not fit this model ({str(error).splitlines()[0]}); "
                "resume with the model the run trained (sources.load_model(run_dir))"
            ) from error
        self.phase.restore(checkpoint)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        rng = state.get("rng", {})
        if rng.get("torch"):
            torch.set_rng_state(torch.tensor(rng["torch"], dtype=torch.uint8))
        if rng.get("cuda") and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in rng["cuda"]])
        self.start_epoch = checkpoint.epoch
        self.global_step = int(state.get("global_step", 0))
        self.best = BestEpoch.from_state(state.get("best"), int(state.get("since_best", 0)))
        self.notes.append(
            f"resumed after epoch {self.start_epoch} of {self.config.epochs} ({self.phase.plan.description})"
        )

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> Generator[Event, None, None]:
        try:
            with self.group.together("prepare the run"):
                self._prepare()
                committed = [r for r in self.recorded.get("epochs", []) if int(r["epoch"]) <= self.start_epoch]
                self.record.commit_start(  # the starting model first: the folder loads from now on
                    self.model, self._manifest_fields(), committed, self.best, resume=self.resume,
                )
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
            except Exception as error:  # noqa: BLE001 - reported in RunFinished, the process lives on
                if is_out_of_memory(error):
                    reason, message = "failed", self._oom_message()
                else:
                    reason, message = "failed", distributed.describe_collective_error(error, self.group) or describe_failure(error)
            message = self._finish(reason, message)
            yield RunFinished(
                reason=reason,  # type: ignore[arg-type]
                message=message,
                best_epoch=self.best.epoch,
                best_val_accuracy=self.best.val_accuracy,
                run_dir=str(self.run_dir) if self.run_dir is not None else None,
                saved_epochs=self.record.committed_epochs if self.run_dir is not None else None,
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
            if self.phase.unfreezes_at(epoch):
                note = self.phase.unfreeze(epoch)
                self._wrap_for_ranks()  # DDP reduces the gradients of what trained when it was built
                yield Note(note)
            started = time.perf_counter()
            trained = yield from self._train_epoch(epoch)
            if isinstance(trained, _RunEnds):
                return trained.reason, trained.message
            train_loss, train_accuracy, images_per_second = trained
            validation = self._validate()
            if validation is None:
                return "stopped", self._stopped_message(epoch)
            val_loss, val_accuracy = validation
            if not math.isfinite(val_loss):
                return "diverged", self._diverged_message(epoch + 1, None)
            is_best = self.best.update(epoch + 1, val_accuracy, val_loss)
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
                "phase": self.phase.plan.phase,
                "is_best": is_best,
            }
            self.record.commit_epoch(
                record, self.model, self.phase.optimizer, self._checkpoint_state(epoch + 1), self.best, is_best=is_best,
            )
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
            if c.patience is not None and self.best.since >= c.patience and remaining > 0:
                return "early-stopped", (
                    f"no improvement for {self.best.since} epochs (patience {c.patience}); "
                    f"best val accuracy {self.best.accuracy:.1%} at epoch {self.best.epoch}"
                )
        return "completed", f"trained {c.epochs} epochs; best val accuracy {self.best.accuracy:.1%} at epoch {self.best.epoch}"

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
                self.model, self.phase.plan, kind=c.optimizer, lr=c.lr * STREAM_LR_FACTOR,
                weight_decay=c.weight_decay, backbone_lr_factor=c.backbone_lr_factor,
            )
            learner = HeadLearner(self.head, self._optimisation(self.head, optimizer, schedule=None), c.batch_size, c.seed)
        caches = yield from stream_cache(
            self.model, self.cache_head, self.split.train, self.split.val, self.eval_transform,
            device=self.device, batch_size=c.batch_size, workers=c.workers, seed=c.seed,
            autocast_dtype=self.precision.features_dtype, channels_last=self.channels_last, stop=self.stop,
            max_events_per_second=c.max_step_events_per_second, learner=learner, group=self.group,
        )
        if caches is None:
            self.head.load_state_dict(starting_head)
            return False
        self.cache_train, self.cache_val = caches
        self.resources.callback(self._drop_cache)
        return True

    def _drop_cache(self) -> None:
        self.cache_train = self.cache_val = None  # type: ignore[assignment]

    def _optimisation(
        self, forward: Any, optimizer: torch.optim.Optimizer, schedule: Any, step_weights: list[float] | None = None,
    ) -> Optimisation:
        scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None
        return Optimisation(
            forward=forward, criterion=self.criterion, optimizer=optimizer, device=self.device, schedule=schedule,
            scaler=scaler if schedule is None else self.scaler, grad_clip=self.config.grad_clip,
            autocast_dtype=self.autocast_dtype, channels_last=self.channels_last,
            check_every_step=self.device.type != "cuda", step_weights=step_weights,
        )

    def _train_epoch(self, epoch: int) -> Generator[Event, None, tuple[float, float, float] | _RunEnds]:
        """One epoch of steps; its (loss, accuracy, images/s), or how the run ends."""
        c = self.config
        set_train_mode(self.model, self.phase.plan)
        order = epoch_order(c.seed, epoch, self.n_train)
        weights = None
        if self.cache_head is not None:
            batches: Any = feature_cache.batches(self.cache_train, c.batch_size, order, drop_last=self.drop_last)
            forward = self.head
        else:
            assert self.loaders is not None
            if self.group.distributed:  # this rank's share of every batch of the one-process order
                self.loaders.train_sampler.order, shares = batch_slices(
                    order, c.batch_size, self.group.world_size, self.group.rank, drop_last=self.drop_last,
                )
                weights = loss_weights(shares, self.group.rank)
            else:
                self.loaders.train_sampler.order = order.tolist()
            self.loader_generator.manual_seed(c.seed * 1_000_003 + epoch + 500_009)  # worker seeds
            batches = self.loaders.train
            model = self.ddp or self.model
            forward = lambda inputs: call_model(model, inputs)  # noqa: E731 - one expression
        outcome = yield from train_one_epoch(
            self._optimisation(forward, self.phase.optimizer, self.phase.schedule, weights), batches,
            epoch=epoch + 1, steps_per_epoch=self.steps_per_epoch, global_step=self.global_step, stop=self.stop,
            max_events_per_second=c.max_step_events_per_second,
        )
        self.global_step = outcome.global_step
        self._last_lr = outcome.lr
        if outcome.status == "diverged":
            return _RunEnds("diverged", self._diverged_message(epoch + 1, outcome.step))
        if outcome.status == "stopped":
            return _RunEnds("stopped", self._stopped_message(epoch))
        if outcome.seen == 0:
            raise HeadswapError("the training split produced no batches")
        if self.ddp is None:  # one process, or a head that every rank trained alike: rank 0's figures
            loss, accuracy, images_per_second = self.group.from_main(
                [outcome.loss, outcome.accuracy, outcome.images_per_second]
            )
            return loss, accuracy, images_per_second
        loss_sum, correct, seen, images_per_second = self.group.sum(  # the ranks' shares, added up
            [outcome.loss * outcome.seen, outcome.accuracy * outcome.seen, outcome.seen, outcome.images_per_second]
        )
        return loss_sum / seen, round(correct) / seen, images_per_second

    def _validate(self) -> tuple[float, float] | None:
        self.model.eval()
        if self.cache_head is not None:
            measured = validate(
                self.head, feature_cache.batches(self.cache_val, self.config.batch_size), self.device,
                autocast_dtype=self.autocast_dtype, stop=self.stop,
            )
            return None if measured is None else tuple(self.group.from_main(measured))  # type: ignore[return-value]
        assert self.loaders is not None
        if self.ddp is None:
            return validate(
                model_logits(self.model), self.loaders.val, self.device, autocast_dtype=self.autocast_dtype,
                channels_last=self.channels_last, stop=self.stop,
            )
        # Each rank measures its part with rank 0's BatchNorm statistics (the model rank 0
        # saves); a stop waits for the next step, where the ranks agree on it.
        self.group.broadcast_module(self.model, buffers_only=True)
        measured = validate(
            model_logits(self.model), self.loaders.val, self.device, autocast_dtype=self.autocast_dtype,
            channels_last=self.channels_last,
        )
        assert measured is not None  # only a stop ends it early, and it was given none
        loss, accuracy = measured
        share = self.loaders.val_share
        loss_sum, correct, seen = self.group.sum([loss * share, accuracy * share, share])
        return loss_sum / seen, round(correct) / seen

    # -- what is saved ----------------------------------------------------------------------

    def _checkpoint_state(self, epoch: int) -> dict[str, Any]:
        """Everything besides the model and the optimizer that resuming after ``epoch`` needs."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state().tolist()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
        return {
            "epoch": epoch,
            "global_step": self.global_step,
            "phase": self.phase.plan.phase,
            "schedule": self.phase.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "best": self.best.to_state(),
            "since_best": self.best.since,
            "rng": rng,
            "config": self.config.to_dict(),
            "features_cached": self.cache_head is not None,
            "saved_at": now(),
        }

    def _manifest_fields(self) -> dict[str, Any]:
        """What every commit of this run's manifest says besides its epochs and files."""
        loaded = replace(
            self.loaded,
            preprocessing=self.preprocessing,
            class_names=self.class_names,
            source=self.recorded.get("source", self.loaded.source),
        )
        return {
            **runs.model_metadata(loaded, self.heads),
            "class_names": list(self.class_names),
            "training": self.config.to_dict(),
            "split": self.split.to_dict(self.dataset.root),
            "dataset_root": str(self.dataset.root),
            "skipped_files": [{"path": printable_path(s.path), "reason": s.reason} for s in self.dataset.skipped],
            "seed": self.config.seed,
            "features_cached": self.cache_head is not None,
            "device": describe_device(self.device),
            **({"distributed": self._distributed_metadata()} if self.group.distributed else {}),
            "started_at": self.started_at,
        }

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
            self.record.restore_best(self.model)
            self.model.eval()
            self.record.commit_finished(reason, self.best)
        except Exception as error:  # noqa: BLE001 - the run is over; say what else went wrong
            message = f"{message} (also: {describe_failure(error)})"
        return message

    def _release_folder(self) -> None:
        if self.record is not None:
            self.record.close()

    def _cleanup(self) -> None:
        self._release_folder()
        self.resources.close()  # loaders shut down, the CPU threads given back, the cache dropped
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
        return float(getattr(self, "_last_lr", self.phase.head_lr()))

    def _stopped_message(self, epoch: int) -> str:
        return stopped_message(epoch, self.best, has_folder=self.run_dir is not None)

    def _diverged_message(self, epoch: int, step: int | None) -> str:
        return diverged_message(epoch, step, self.config.lr, self.best)

    def _oom_message(self) -> str:
        return out_of_memory_message(self.device, self.config.batch_size, self.autocast_dtype)


def _align_storage(model: nn.Module) -> None:
    """Give weights that are views into a loaded file's buffer (safetensors) their own
    64-byte-aligned memory: vectorised CPU kernels round differently on unaligned data, which
    would make a resumed run drift from an uninterrupted one in the last bits."""
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.device.type == "cpu" and tensor.numel() and tensor.data_ptr() % 64:
                tensor.data = tensor.data.clone()
