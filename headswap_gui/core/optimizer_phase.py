"""What trains now, and the optimizer and schedule that train it: one object per run.

The tutorial's pitfall is an optimizer built before the head swap or before an unfreeze,
which silently keeps training the old parameter set. Here the freezing plan, the optimizer
over exactly the parameters that plan trains, and the schedule over the plan's epochs are
made together and only together: at the start, at a gradual unfreeze (the optimizer is
rebuilt over the new set, carrying the head's moments over, and the schedule restarts for
the phase) and on resume (restored from the checkpoint into a freshly built pair).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import runs
from .freezing import (
    FreezePlan,
    apply_freeze,
    build_optimizer,
    build_schedule,
    carry_optimizer_state,
    initial_phase,
    plan_freeze,
    schedule_position,
    trainable_parameters_match_optimizer,
)
from .train_config import TrainConfig

__all__ = ["PhaseOptimizer"]


class PhaseOptimizer:
    """The run's freezing plan (``plan``), its ``optimizer`` and per-step ``schedule``."""

    def __init__(
        self, model: nn.Module, head_paths: Sequence[str], config: TrainConfig, steps_per_epoch: int,
        phase: str | None = None,
    ) -> None:
        """``phase``: the phase a checkpoint was saved in (None: the config's first phase)."""
        self.model, self.head_paths, self.config = model, list(head_paths), config
        self.steps_per_epoch = steps_per_epoch
        self.plan: FreezePlan = plan_freeze(
            model, self.head_paths, config.freeze, phase or initial_phase(config.freeze), last_k=config.last_k,
        )
        apply_freeze(model, self.plan)
        self.optimizer: torch.optim.Optimizer | None = None
        self._build(carry_from=None)

    def unfreeze(self, epoch: int) -> str:
        """The gradual plan's second phase from 0-based ``epoch``; a note for the run's log."""
        self.plan = plan_freeze(self.model, self.head_paths, self.config.freeze, "full")
        apply_freeze(self.model, self.plan)
        self._build(carry_from=self.optimizer)
        return (
            f"epoch {epoch + 1}: the backbone is unfrozen and trains at lr × {self.config.backbone_lr_factor:g}; "
            "optimizer and schedule rebuilt"
        )

    def restore(self, checkpoint: runs.Checkpoint) -> None:
        """The optimizer's moments and the schedule's position from ``checkpoint``; the
        learning rates and weight decay stay this config's."""
        state = checkpoint.state
        configured = [(g["initial_lr"], g["weight_decay"]) for g in self.optimizer.param_groups]
        runs.load_optimizer_state(self.optimizer, checkpoint.optimizer_tensors, state["optimizer_layout"])
        for group, (initial_lr, weight_decay) in zip(self.optimizer.param_groups, configured):
            group["initial_lr"], group["weight_decay"] = initial_lr, weight_decay
        self._build_schedule(start_step=schedule_position(state["schedule"]))

    def phase_epochs(self) -> tuple[int, int]:
        """(first epoch, number of epochs) the current phase's schedule spans."""
        c = self.config
        if c.freeze == "gradual":
            if self.plan.phase == "head":
                return 0, max(1, min(c.unfreeze_after, c.epochs))
            return c.unfreeze_after, max(1, c.epochs - c.unfreeze_after)
        return 0, c.epochs

    def unfreezes_at(self, epoch: int) -> bool:
        """Whether the gradual plan moves to its second phase before 0-based ``epoch``."""
        c = self.config
        return c.freeze == "gradual" and self.plan.phase == "head" and epoch >= c.unfreeze_after

    def head_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _build(self, carry_from: torch.optim.Optimizer | None) -> None:
        c = self.config
        optimizer = build_optimizer(
            self.model, self.plan, kind=c.optimizer, lr=c.lr, weight_decay=c.weight_decay,
            backbone_lr_factor=c.backbone_lr_factor,
        )
        if carry_from is not None:
            carry_optimizer_state(carry_from, optimizer)
        self.optimizer = optimizer
        self._build_schedule(start_step=0)
        assert trainable_parameters_match_optimizer(self.model, self.optimizer)

    def _build_schedule(self, start_step: int) -> None:
        """The schedule sets the groups' lr from their ``initial_lr``, so it comes after an
        optimizer load."""
        c = self.config
        _, epochs = self.phase_epochs()
        self.schedule: Any = build_schedule(
            c.schedule, self.optimizer, epochs=epochs, steps_per_epoch=self.steps_per_epoch,
            warmup_epochs=c.warmup_epochs, start_step=start_step,
        )
