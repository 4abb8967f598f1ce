"""Renders the training event stream on a terminal: one live line that redraws in place
(on a TTY), and one permanent line per epoch — the same events the window plots."""

from __future__ import annotations

import shutil
from typing import TextIO

from .core.events import CacheValidation, EpochMetrics, Event, Note, Progress, RunFinished, RunStarted, StepMetrics


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def bar(fraction: float, width: int = 20) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "█" * filled + "·" * (width - filled)


class ProgressPrinter:
    """Turns events into terminal output."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._live = stream.isatty()
        self._epochs = 0
        self._eta = ""

    def show(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            cached = ", backbone features cached" if event.features_cached else ""
            self._epochs = event.epochs
            self._line(
                f"training {len(event.class_names)} classes on {event.device}: {event.train_size} train / "
                f"{event.val_size} val images, {event.steps_per_epoch} steps per epoch{cached}"
            )
        elif isinstance(event, Note):
            self._line(f"note: {event.message}")
        elif isinstance(event, Progress):
            timing = f" · {event.rate:,.0f}/s" if event.rate is not None else ""
            timing += f" · ETA {format_duration(event.eta_seconds)}" if event.eta_seconds is not None else ""
            self._redraw(f"{event.stage} [{bar(event.done / max(event.total, 1))}] {event.done}/{event.total}{timing}")
        elif isinstance(event, CacheValidation):
            self._line(
                f"features cached for {event.cached}/{event.total} training images: the head, trained on them, "
                f"val loss {event.val_loss:.4f} acc {event.val_accuracy:.1%}  ({format_duration(event.seconds)})"
            )
        elif isinstance(event, StepMetrics):
            fraction = event.step / max(event.steps_per_epoch, 1)
            self._redraw(
                f"epoch {event.epoch}/{self._epochs} [{bar(fraction)}] step {event.step}/{event.steps_per_epoch} "
                f"loss {event.loss:.4f} · {event.images_per_second:,.0f} img/s{self._eta}"
            )
        elif isinstance(event, EpochMetrics):
            self._eta = f" · ETA {format_duration(event.eta_seconds)}"
            star = " ★" if event.is_best else ""
            self._line(
                f"epoch {event.epoch}/{event.epochs}  train loss {event.train_loss:.4f} acc {event.train_accuracy:.1%}  "
                f"val loss {event.val_loss:.4f} acc {event.val_accuracy:.1%}{star}  lr {event.lr:.2e}  "
                f"{event.images_per_second:,.0f} img/s  {format_duration(event.seconds)}{self._eta}"
            )
        elif isinstance(event, RunFinished):
            self._line(f"{event.reason}: {event.message}")
            for line in _saved_lines(event):
                self._line(line)

    def _redraw(self, text: str) -> None:
        if self._live:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self._stream.write("\r" + text[:width].ljust(width))
            self._stream.flush()

    def _line(self, text: str) -> None:
        if self._live:
            self._stream.write("\r" + " " * (shutil.get_terminal_size((100, 20)).columns - 1) + "\r")
        self._stream.write(text + "\n")
        self._stream.flush()


def _saved_lines(event: RunFinished) -> list[str]:
    """What the run folder holds now — said only as far as it is true (a failed write must
    never be followed by "saved")."""
    best = (
        f"best validation accuracy {event.best_val_accuracy:.1%} (epoch {event.best_epoch})"
        if event.best_val_accuracy is not None else None
    )
    if event.run_dir is None:
        return [best] if best else []
    if event.saved_epochs is None:
        return [best] if best else []
    if event.reason in ("completed", "early-stopped"):
        return [f"{best}; run saved to {event.run_dir}" if best else f"run saved to {event.run_dir}"]
    if event.saved_epochs == 0:
        return [f"{event.run_dir} holds the starting model and no finished epoch; `--resume` starts the run again there"]
    held = f"{event.run_dir} holds {event.saved_epochs} finished epoch{'s' if event.saved_epochs != 1 else ''}"
    if event.reason == "diverged":
        return [f"{best}; {held}, the best one as its model" if best else held]
    return [f"{best}; {held}; `--resume` continues from the last one" if best else f"{held}; `--resume` continues"]
