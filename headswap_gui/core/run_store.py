"""Writing a run folder so that a kill at any instant leaves the previous epoch or the new
one, never a mix.

One writer at a time holds the folder's :class:`~run_lock.RunLock`. It commits in this order:

1. new weight files under names never used before (``model-e0003.safetensors``,
   ``last-e0005.safetensors``), each written to a temp file, flushed and renamed;
2. the manifest ``headswap.json``, replaced atomically — this rename *is* the commit;
3. ``metrics.csv``, the readable copy of the manifest's epoch records;
4. removal of what the manifest no longer names, and of temp files.

A kill before step 2 leaves files the manifest does not name; the next writer removes them.
After step 2 the new epoch is the folder's state, whatever happens next. A writer opening a
folder to resume first removes stale files and rewrites ``metrics.csv`` from the manifest,
so the copy can only lag the manifest between a kill and the next open.
"""

from __future__ import annotations

import copy
import errno
import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .atomic import write_atomically
from .errors import RunExistsError, RunFolderError, describe_os_error
from .run_lock import LOCK_FILE, RunLock
from .run_manifest import (
    KIND_MODEL,
    KIND_TRAINING_RUN,
    LEGACY_STATE_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    is_weight_file_name,
    is_write_once_file_name,
    manifest_kind,
    read_manifest,
    referenced_files,
)

_TEMP_FILE = re.compile(r"^\.(?P<name>.+)\.[^.]+\.tmp$")  # atomic.write_atomically's temp names

FileWriter = tuple[Callable[[str], None], int]
"""Writes one file's content to the temp path it is given, and about how many bytes it needs."""


def is_ours_by_name(name: str) -> bool:
    """Whether ``name`` is a write-once weight file (``model-e0003.safetensors``) or a temp
    file of one of our files — names only headswap creates, safe to remove when no manifest
    names them."""
    temp = _TEMP_FILE.match(name)
    if temp:
        name = temp.group("name")
        return name in (MANIFEST_FILE, METRICS_FILE, LEGACY_STATE_FILE) or is_weight_file_name(name)
    return is_write_once_file_name(name)


def folder_kind(folder: str | os.PathLike[str]) -> str | None:
    """What ``folder`` holds as committed: ``"training-run"``, ``"model"``, or None. Weight
    files that no manifest names are an interrupted first commit: nothing."""
    return manifest_kind(read_manifest(folder))


def describe_state(manifest: dict[str, Any]) -> str:
    """What a committed manifest holds, for messages ("epoch 3 of 10", ...)."""
    if not manifest:
        return "nothing yet"
    records = manifest.get("epochs") or []
    if manifest_kind(manifest) == KIND_MODEL:
        return "a model"
    total = (manifest.get("training") or {}).get("epochs")
    if not records:
        return "the starting model (no finished epoch)"
    of_total = f" of {total}" if total else ""
    return f"epoch {len(records)}{of_total}"


class RunWriter:
    """The one writer of a run folder, from opening to :meth:`close`.

    ``resume`` continues the training run the folder holds (and fails if it holds none).
    Otherwise the folder must hold nothing of ours: a run or model there raises
    :class:`RunExistsError` unless ``overwrite`` is set, in which case headswap's files (only
    those; never the user's own) are removed first.
    """

    def __init__(self, folder: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False) -> None:
        self.folder = Path(folder)
        self.lock = RunLock(self.folder)
        try:
            self.manifest = read_manifest(self.folder)
            existing = manifest_kind(self.manifest)
            self._owned = _owned_fixed_names(self.manifest)
            if resume:
                if existing != KIND_TRAINING_RUN:
                    raise RunFolderError(f"nothing to resume in {self.folder}: it holds no training run")
            elif existing is not None:
                if not overwrite:
                    raise RunExistsError(_exists_message(self.folder, existing, self.manifest), existing)
                self.clear()
            self.remove_stale_files()
            if resume and self.manifest:
                self._write_metrics()
        except BaseException:
            self.lock.release()
            raise

    def commit(self, manifest: dict[str, Any], new_files: Mapping[str, FileWriter] | None = None) -> None:
        """Write ``new_files`` (name → :data:`FileWriter`), then ``manifest`` as the commit, then the
        metrics copy, then remove what the new manifest no longer names.

        Raises :class:`RunFolderError` with a sentence when the disk refuses; the folder then
        still holds the previous commit.
        """
        from .runs import write_json

        if not self.lock.held:
            raise RunFolderError(f"{self.folder} was closed; open it again to write")
        try:
            for name, (write, size) in (new_files or {}).items():
                _require_space(self.folder, size)
                write_atomically(self.folder / name, write)
            write_json(self.folder / MANIFEST_FILE, manifest)
        except Exception as error:
            self.remove_stale_files()  # what this commit wrote is not named by any manifest: free the room
            detail = describe_os_error(error) if isinstance(error, OSError) else str(error)
            raise RunFolderError(
                f"could not write the run folder {self.folder}: {detail}; it still holds "
                f"{describe_state(self.manifest)} intact"
            ) from error
        self.manifest = copy.deepcopy(manifest)  # the caller goes on changing its lists
        try:
            self._write_metrics()
        except OSError as error:
            raise RunFolderError(
                f"saved {describe_state(manifest)} in {self.folder}, but could not update {METRICS_FILE}: "
                f"{describe_os_error(error)}"
            ) from error
        self.remove_stale_files()

    def remove_stale_files(self) -> None:
        """Delete our files that the manifest does not name, and every temp file of ours."""
        keep = referenced_files(self.manifest) if self.manifest else set()
        for entry in _entries(self.folder):
            if entry not in keep and (is_ours_by_name(entry) or entry in self._owned):
                _remove(self.folder / entry)

    def clear(self) -> None:
        """Remove every file headswap wrote here (never the user's own files)."""
        for entry in _entries(self.folder):
            if is_ours_by_name(entry) or entry in self._owned:
                _remove(self.folder / entry)
        self.manifest = {}

    def close(self) -> None:
        self.lock.release()

    def _write_metrics(self) -> None:
        from .runs import write_metrics_csv

        if manifest_kind(self.manifest) == KIND_TRAINING_RUN:
            write_metrics_csv(self.folder / METRICS_FILE, list(self.manifest.get("epochs") or []))


def copy_run(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Copy the committed state of a run or model folder (not its lock or temp files) into a
    new folder; safe while the source is being trained (it copies one committed epoch)."""
    source, target = Path(source), Path(target)
    if target.exists():
        raise RunFolderError(f"{target} already exists; choose a new folder name")
    for _attempt in range(3):  # a live writer may replace the manifest while we copy
        manifest = read_manifest(source)
        if not manifest:
            raise RunFolderError(f"{source} holds no headswap model or run")
        names = sorted(referenced_files(manifest) - {MANIFEST_FILE})
        staging = target.with_name(f".{target.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.mkdir(parents=True)
            for name in names:
                if (source / name).is_file():
                    shutil.copy2(source / name, staging / name)
            shutil.copy2(source / MANIFEST_FILE, staging / MANIFEST_FILE)
            if read_manifest(staging) == manifest:
                os.replace(staging, target)
                return target
        except FileNotFoundError:
            pass  # the writer removed a file it no longer needs; take the new commit
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise RunFolderError(f"could not copy {source} to {target}: {describe_os_error(error)}") from error
        shutil.rmtree(staging, ignore_errors=True)
    raise RunFolderError(f"{source} changed while it was being copied; try again")


def _require_space(folder: Path, size: int) -> None:
    """Refuse a write the disk has no room for, as the OS would (ENOSPC), before a writer
    library reports it in words of its own."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if size > free:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder))


def _exists_message(folder: Path, kind: str, manifest: dict[str, Any]) -> str:
    if kind == KIND_MODEL:
        return f"{folder} already holds a headswap model; choose a new folder, or replace it"
    finished = manifest.get("finished")
    status = f", {finished}" if finished else ", interrupted" if manifest else ", interrupted before it saved anything"
    return (
        f"{folder} already holds a training run ({describe_state(manifest)}{status}); choose a new folder, "
        "resume that run, or replace it"
    )


def _owned_fixed_names(manifest: dict[str, Any]) -> set[str]:
    """Fixed-name files (``metrics.csv``, ``model.safetensors``...) that are ours to replace
    or remove: only those a manifest of ours accounts for. A user's own ``model.safetensors``
    in a folder without one is never touched."""
    if not manifest:
        return set()
    owned = referenced_files(manifest) | {MANIFEST_FILE, METRICS_FILE}
    if manifest.get("format_version") == 1:  # its resume files had fixed names
        owned |= {LEGACY_STATE_FILE, "last.safetensors", "model.safetensors"}
    return owned


def _entries(folder: Path) -> list[str]:
    try:
        return sorted(name for name in os.listdir(folder) if name != LOCK_FILE)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass  # gone already, or a read-only folder: stale files are ignored, never loaded
