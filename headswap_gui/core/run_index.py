"""Where runs live and what they are: the runs folder shared by the window and the CLI, and
one summary line per run for ``headswap runs`` and the window's run list."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import RunFolderError
from .run_lock import read_holder_pid
from .run_manifest import KIND_TRAINING_RUN, manifest_kind, read_manifest

RUNS_DIR_VARIABLE = "HEADSWAP_RUNS_DIR"


def default_runs_root() -> Path:
    """Where runs go when no folder is named: ``$HEADSWAP_RUNS_DIR``, else
    ``<user data dir>/headswap/runs`` (platformdirs)."""
    configured = os.environ.get(RUNS_DIR_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("headswap")) / "runs"


def new_run_folder(root: str | os.PathLike[str] | None = None) -> Path:
    """A fresh, dated folder name under ``root`` (not created)."""
    base = Path(root) if root is not None else default_runs_root()
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    candidate, suffix = base / stamp, 2
    while candidate.exists():
        candidate = base / f"{stamp}-{suffix}"
        suffix += 1
    return candidate


@dataclass(frozen=True)
class RunSummary:
    """One training run as a list shows it."""

    folder: str
    status: str  # completed, early-stopped, stopped, diverged, failed, running, interrupted, unfinished, damaged
    started_at: str | None
    source: str | None
    dataset_root: str | None
    class_names: tuple[str, ...]
    epochs_done: int
    epochs_planned: int | None
    best_epoch: int | None
    best_val_accuracy: float | None
    problem: str | None = None  # why a damaged run cannot be read

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["class_names"] = list(self.class_names)
        return data


def summarize_run(folder: str | os.PathLike[str]) -> RunSummary | None:
    """The summary of the run in ``folder``; None when it holds no training run."""
    folder = Path(folder)
    try:
        manifest = read_manifest(folder, check_split=False)  # the list shows no image paths
    except RunFolderError as error:
        return RunSummary(str(folder), "damaged", None, None, None, (), 0, None, None, None, str(error))
    if manifest_kind(manifest) != KIND_TRAINING_RUN:
        return None
    epochs = manifest.get("epochs") or []
    return RunSummary(
        folder=str(folder),
        status=manifest.get("finished") or _unfinished_status(folder),
        started_at=manifest.get("started_at"),
        source=manifest.get("source"),
        dataset_root=manifest.get("dataset_root"),
        class_names=tuple(manifest.get("class_names") or ()),
        epochs_done=len(epochs),
        epochs_planned=(manifest.get("training") or {}).get("epochs"),
        best_epoch=manifest.get("best_epoch"),
        best_val_accuracy=manifest.get("best_val_accuracy"),
    )


def list_runs(root: str | os.PathLike[str] | None = None) -> list[RunSummary]:
    """Every training run directly under ``root``, newest first."""
    base = Path(root) if root is not None else default_runs_root()
    try:
        folders = [entry for entry in base.iterdir() if entry.is_dir() and not entry.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []
    summaries = [s for s in (summarize_run(folder) for folder in folders) if s is not None]
    return sorted(summaries, key=lambda s: (s.started_at or "", s.folder), reverse=True)


def _unfinished_status(folder: Path) -> str:
    """A run without an end: "running" while the process named in its lock file lives,
    else "interrupted" (killed, or the machine went down). Read without taking the lock,
    so listing never gets in a writer's way."""
    pid = read_holder_pid(folder)
    if pid is None:
        return "interrupted"
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return "unfinished"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "interrupted"
    except PermissionError:
        return "running"  # alive, another user's process
    except OSError:
        return "interrupted"
    return "running"
