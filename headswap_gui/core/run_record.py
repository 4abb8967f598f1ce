"""A training run's record: its manifest, epoch by epoch, committed to the run folder.

:class:`RunRecord` is the one place that knows what a training run's ``headswap.json`` says
and when a weights or checkpoint file becomes the folder's: the starting model first (the
folder loads from then on), after every epoch the resume checkpoint and — when the epoch is
the best so far — its weights, and at the end how the run finished. :mod:`run_store` makes
each commit atomic; this module decides what goes into it. Without a folder (``run_dir``
None) it keeps the best epoch's weights in memory instead, so the model still ends with them.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import runs
from .run_manifest import KIND_TRAINING_RUN, checkpoint_file_name, weights_file_name
from .run_messages import BestEpoch
from .run_store import RunWriter

__all__ = ["RunRecord", "now"]


def now() -> str:
    """The time stamps the manifest uses."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunRecord:
    """The committed state of one run in ``run_dir`` (None: no folder), written through
    ``writer`` (None: no folder, or not rank 0)."""

    def __init__(
        self, writer: RunWriter | None, run_dir: Path | None, *, weights_name: str, checkpoint_name: str | None,
        keeps_snapshot: bool,
    ) -> None:
        """``weights_name``/``checkpoint_name``: the files the folder holds now (a resumed
        run's); ``keeps_snapshot``: whether this process keeps the best weights in memory
        when it has no folder to keep them in (rank 0's model is the run's; the other
        ranks' end with their process)."""
        self.writer, self.run_dir = writer, run_dir
        self.weights_name, self.checkpoint_name = weights_name, checkpoint_name
        self.fields: dict[str, Any] = {}
        self.epochs: list[dict[str, Any]] = []
        self.committed_epochs = 0  # epochs the folder holds as committed: counted at each commit
        self._folder_kept = writer is not None  # stays true when the writer is released early
        self._keeps_snapshot = keeps_snapshot
        self._snapshot: dict[str, torch.Tensor] | None = None

    def commit_start(
        self, model: nn.Module, fields: dict[str, Any], epochs: list[dict[str, Any]], best: BestEpoch, *, resume: bool,
    ) -> None:
        """The run's first commit: ``fields``, the manifest entries that stay the same for the
        whole run; ``epochs``, the records a resumed run has committed; the starting model (a
        resumed run keeps its files)."""
        self.fields, self.epochs = dict(fields), list(epochs)
        if self.writer is not None:
            self._commit({} if resume else {self.weights_name: runs.weights_writer(model)}, best, finished=None)

    def commit_epoch(
        self, record: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any],
        best: BestEpoch, *, is_best: bool,
    ) -> None:
        """Epoch ``record["epoch"]`` done: its checkpoint (``state`` plus the model and the
        optimizer) and, when it ``is_best``, its weights."""
        self.epochs.append(record)
        epoch = int(record["epoch"])
        if self.writer is None:
            if is_best and self._keeps_snapshot:
                self._snapshot = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return
        weights = weights_file_name(epoch) if is_best else self.weights_name
        checkpoint = checkpoint_file_name(epoch)
        new = {checkpoint: runs.checkpoint_writer(model, optimizer, state)}
        if is_best:
            new[weights] = runs.weights_writer(model)
        self._commit(new, best, finished=None, weights=weights, checkpoint=checkpoint)

    def commit_finished(self, reason: str, best: BestEpoch) -> None:
        if self.writer is not None:
            self._commit({}, best, finished=reason)

    def restore_best(self, model: nn.Module) -> None:
        """Put the kept weights back into ``model``: the best epoch's or — when none finished
        — the starting model's, so a run stopped in its first epoch leaves no half-trained
        weights behind."""
        kept = self.run_dir / self.weights_name if self.run_dir is not None and self._folder_kept else None
        if kept is not None and kept.is_file():
            from safetensors.torch import load_file

            model.load_state_dict(load_file(str(kept)))
        elif self._snapshot is not None:
            model.load_state_dict(self._snapshot)

    def close(self) -> None:
        """Release the folder (idempotent); what was committed stands."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()

    def _commit(
        self, new_files: dict[str, Any], best: BestEpoch, finished: str | None, *, weights: str | None = None,
        checkpoint: str | None = None,
    ) -> None:
        """``new_files``, then the manifest naming them (the weights and checkpoint files it
        names change only once that has succeeded)."""
        assert self.writer is not None
        weights = weights or self.weights_name
        checkpoint = checkpoint or self.checkpoint_name
        manifest = {
            **self.fields,
            "kind": KIND_TRAINING_RUN,
            "weights_file": weights,
            "checkpoint_file": checkpoint,
            "epochs": list(self.epochs),
            "best_epoch": best.epoch,
            "best_val_accuracy": best.val_accuracy,
            "finished": finished,
            "updated_at": now(),
        }
        self.writer.commit(manifest, new_files)
        self.weights_name, self.checkpoint_name = weights, checkpoint
        self.committed_epochs = len(manifest["epochs"])
