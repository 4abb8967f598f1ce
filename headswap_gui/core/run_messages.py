"""The sentences a training run ends with: what happened, what is kept, what to do.

Each says where the run stood (epoch, step), what the run folder or the model keeps (the
best epoch, or the model as it was) and the one setting that changes the outcome. A failure
that no setting explains is a bug here or in the model's code: its traceback goes to the log
and the sentence keeps only what torch said.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .errors import HeadswapError

__all__ = ["BestEpoch", "describe_failure", "diverged_message", "out_of_memory_message", "stopped_message"]

_log = logging.getLogger(__name__)


@dataclass
class BestEpoch:
    """The best epoch so far (highest val accuracy, then lowest val loss) and the epochs since."""

    epoch: int | None = None
    accuracy: float = float("-inf")
    loss: float = float("inf")
    since: int = 0

    def update(self, epoch: int, accuracy: float, loss: float) -> bool:
        """Count ``epoch`` (1-based); whether it is the new best."""
        if accuracy > self.accuracy or (accuracy == self.accuracy and loss < self.loss):
            self.epoch, self.accuracy, self.loss, self.since = epoch, accuracy, loss, 0
            return True
        self.since += 1
        return False

    def to_state(self) -> dict[str, float | int] | None:
        """For the resume checkpoint (``since`` is stored beside it)."""
        if self.epoch is None:
            return None
        return {"epoch": self.epoch, "val_accuracy": self.accuracy, "val_loss": self.loss}

    @classmethod
    def from_state(cls, best: dict[str, float | int] | None, since: int) -> BestEpoch:
        if not best or best.get("epoch") is None:
            return cls(since=since)
        return cls(int(best["epoch"]), float(best["val_accuracy"]), float(best["val_loss"]), since)

    @property
    def val_accuracy(self) -> float | None:
        return self.accuracy if self.epoch is not None else None


def stopped_message(epoch: int, best: BestEpoch, *, has_folder: bool) -> str:
    """``epoch`` is the 0-based epoch the stop came in."""
    if best.epoch is None:
        kept = "; the model is as it was before the run" if has_folder else ""
        return f"stopped in epoch {epoch + 1}, before any epoch finished{kept}"
    return f"stopped in epoch {epoch + 1}; the best epoch ({best.epoch}, val accuracy {best.accuracy:.1%}) is kept"


def diverged_message(epoch: int, step: int | None, lr: float, best: BestEpoch) -> str:
    """``epoch`` is 1-based."""
    where = f"epoch {epoch}" + (f", step {step}" if step else "")
    kept = f"; the best epoch ({best.epoch}) is kept" if best.epoch is not None else "; no epoch had finished"
    return f"the loss became NaN or infinite in {where}; lower the learning rate (now {lr:g}) or set grad_clip{kept}"


def out_of_memory_message(device: torch.device, batch_size: int, autocast_dtype: torch.dtype | None) -> str:
    hint = f"try batch size {max(1, batch_size // 2)}"
    if autocast_dtype is None and device.type == "cuda":
        hint += " or mixed precision (bf16)"
    return f"out of memory on {device} at batch size {batch_size}; {hint}"


def describe_failure(error: BaseException) -> str:
    """What to tell the user about an exception that ended a run."""
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
