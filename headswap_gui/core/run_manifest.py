"""``headswap.json``: the manifest of a model folder or training run, and its validation.

The manifest is the one file that says what a folder holds. Weight files are written once
under names that carry their epoch (``model-e0003.safetensors``, ``last-e0005.safetensors``)
and the manifest names the current ones, so replacing the manifest — one atomic rename — is
the moment an epoch is committed (see :mod:`run_store`). Everything read back from it is
checked here first: a folder is user data that may have been edited, truncated or tampered
with, and a bad field must end in a sentence naming the field, never in an ``AttributeError``
deep in model construction or in opening a path outside the image folder.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from .errors import RunFolderError

MANIFEST_FILE = "headswap.json"
LEGACY_WEIGHTS_FILE = "model.safetensors"  # model folders, and runs of format version 1
METRICS_FILE = "metrics.csv"  # a readable copy of the manifest's epoch records
LEGACY_STATE_FILE = "last.json"  # format version 1 wrote the resume state here too
LEGACY_CHECKPOINT_FILE = "last.safetensors"
FORMAT = "headswap-model"
FORMAT_VERSION = 2
KIND_MODEL = "model"
KIND_TRAINING_RUN = "training-run"
FINISH_REASONS = ("completed", "early-stopped", "stopped", "diverged", "failed")

_WEIGHT_FILE = re.compile(r"^(model|last)(?P<epoch>-e\d{4,9})?\.safetensors$")


def weights_file_name(epoch: int) -> str:
    """The best weights as of ``epoch`` (0: the starting model, before any training)."""
    return f"model-e{epoch:04d}.safetensors"


def checkpoint_file_name(epoch: int) -> str:
    """The resume checkpoint written after ``epoch``."""
    return f"last-e{epoch:04d}.safetensors"


def is_weight_file_name(name: str) -> bool:
    return bool(_WEIGHT_FILE.match(name))


def is_write_once_file_name(name: str) -> bool:
    """A name from :func:`weights_file_name` / :func:`checkpoint_file_name`: only headswap
    makes these, so one that no manifest names is an interrupted write, safe to remove."""
    match = _WEIGHT_FILE.match(name)
    return bool(match and match.group("epoch"))


def read_manifest(folder: str | os.PathLike[str], *, check_split: bool = True) -> dict[str, Any]:
    """The folder's validated manifest; an empty dict when it has none. ``check_split=False``
    skips the per-image rows of the recorded split (a run list never opens them, and 20,000
    rows cost a third of a second); everything that loads or resumes a run checks them.

    Raises :class:`RunFolderError` naming the file and the field when it is damaged.
    """
    path = Path(folder) / MANIFEST_FILE
    if not path.exists():
        return {}
    if not path.is_file():
        raise RunFolderError(f"{path} is not a file; the folder is not a headswap model folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise _damaged(path, f"it is not valid JSON ({error})") from error
    except OSError as error:
        from .errors import describe_os_error

        raise RunFolderError(f"cannot read {path}: {describe_os_error(error)}") from error
    validate_manifest(data, path, check_split=check_split)
    return data


def manifest_kind(manifest: dict[str, Any]) -> str | None:
    """``"training-run"``, ``"model"``, or None for an empty manifest."""
    if not manifest:
        return None
    if manifest.get("kind") in (KIND_MODEL, KIND_TRAINING_RUN):
        return str(manifest["kind"])
    return KIND_TRAINING_RUN if "training" in manifest else KIND_MODEL


def weights_file(manifest: dict[str, Any]) -> str:
    """The weight file the manifest names (older folders: ``model.safetensors``)."""
    return str(manifest.get("weights_file") or LEGACY_WEIGHTS_FILE)


def checkpoint_file(manifest: dict[str, Any]) -> str | None:
    """The resume checkpoint the manifest names; None before the first finished epoch."""
    if "checkpoint_file" in manifest:
        return manifest["checkpoint_file"]
    return LEGACY_CHECKPOINT_FILE if manifest.get("epochs") else None  # format version 1


def referenced_files(manifest: dict[str, Any]) -> set[str]:
    """The files a manifest needs; everything else of ours in the folder is stale."""
    names = {MANIFEST_FILE, METRICS_FILE, weights_file(manifest)}
    checkpoint = checkpoint_file(manifest)
    if checkpoint:
        names.add(checkpoint)
        if checkpoint == LEGACY_CHECKPOINT_FILE:
            names.add(LEGACY_STATE_FILE)
    return names


def validate_manifest(data: Any, path: Path, *, check_split: bool = True) -> None:
    """Check every field a loader or a resume reads: types, lengths, names, and that the
    recorded image paths stay inside the image folder."""
    check = _Checker(path)
    check.that(isinstance(data, dict), "", "is not a JSON object")
    check.that(data.get("format") == FORMAT, "format", f"is {data.get('format')!r}, not {FORMAT!r}")
    version = data.get("format_version")
    check.that(_is_int(version) and 1 <= version <= FORMAT_VERSION, "format_version",
               f"is {version!r}; this headswap reads versions 1 to {FORMAT_VERSION}")
    check.that(isinstance(data.get("architecture"), str) and bool(data["architecture"]), "architecture", "is missing")
    num_classes = data.get("num_classes")
    check.that(_is_int(num_classes) and num_classes >= 1, "num_classes", f"is {num_classes!r}, not a class count")
    heads = data.get("heads", [])
    check.that(isinstance(heads, list), "heads", "is not a list")
    for index, head in enumerate(heads):
        where = f"heads[{index}]"
        check.that(isinstance(head, dict), where, "is not an object")
        check.that(isinstance(head.get("path"), str) and bool(head["path"]), f"{where}.path", "is missing")
        check.that(_is_int(head.get("in_features")) and head["in_features"] >= 1, f"{where}.in_features",
                   f"is {head.get('in_features')!r}")
        check.that(isinstance(head.get("spec"), dict), f"{where}.spec", "is missing")
        check.that(isinstance(head.get("is_conv", False), bool), f"{where}.is_conv", "is not true or false")
    names = data.get("class_names")
    if names is not None:
        check.that(isinstance(names, list) and all(isinstance(n, str) and n for n in names), "class_names",
                   "is not a list of names")
        check.that(len(names) == num_classes, "class_names",
                   f"has {len(names)} names but the head has {num_classes} outputs")
        check.that(len(set(names)) == len(names), "class_names", "repeats a name")
    check.that(isinstance(data.get("preprocessing"), dict), "preprocessing", "is missing")
    try:
        _check_preprocessing(data["preprocessing"])
    except (KeyError, TypeError, ValueError) as error:
        check.fail("preprocessing", f"is not usable ({error})")
    for field in ("weights_file", "checkpoint_file"):
        value = data.get(field)
        if field in data and (value is not None or field == "weights_file"):
            check.that(isinstance(value, str) and is_weight_file_name(value), field,
                       f"is {value!r}, not the name of a weights file in the folder")
    check.that(data.get("kind", KIND_MODEL) in (KIND_MODEL, KIND_TRAINING_RUN), "kind", f"is {data.get('kind')!r}")
    if "training" in data:
        _validate_run_fields(data, check, check_split)


def _validate_run_fields(data: dict[str, Any], check: _Checker, check_split: bool) -> None:
    check.that(isinstance(data["training"], dict), "training", "is not an object")
    records = data.get("epochs", [])
    check.that(isinstance(records, list) and all(isinstance(r, dict) for r in records), "epochs", "is not a list of records")
    numbers = [r.get("epoch") for r in records]
    check.that(numbers == list(range(1, len(records) + 1)), "epochs",
               f"numbers its epochs {numbers}, not 1 to {len(records)} once each")
    best = data.get("best_epoch")
    check.that(best is None or (_is_int(best) and 1 <= best <= len(records)), "best_epoch", f"is {best!r}")
    finished = data.get("finished")
    check.that(finished is None or finished in FINISH_REASONS, "finished", f"is {finished!r}")
    check.that(isinstance(data.get("dataset_root", ""), str), "dataset_root", "is not a path")
    split = data.get("split")
    if split is None or not check_split:
        return
    check.that(isinstance(split, dict), "split", "is not an object")
    num_classes = data["num_classes"]
    for part in ("train", "val"):
        rows = split.get(part)
        check.that(isinstance(rows, list), f"split.{part}", "is not a list")
        for index, row in enumerate(rows):
            where = f"split.{part}[{index}]"
            check.that(isinstance(row, list) and len(row) == 2, where, "is not [path, label]")
            relative, label = row
            check.that(_is_int(label) and 0 <= label < num_classes, where, f"has label {label!r}")
            check.that(isinstance(relative, str) and is_inside_relative(relative), where,
                       f"points outside the image folder ({relative!r})")


def is_inside_relative(relative: str) -> bool:
    """Whether a recorded "/"-separated path stays inside the folder it is relative to."""
    if not relative or "\x00" in relative:
        return False
    posix, windows = PurePosixPath(relative), PureWindowsPath(relative)
    if posix.is_absolute() or windows.is_absolute() or windows.drive:
        return False
    return ".." not in posix.parts and ".." not in windows.parts


def _check_preprocessing(data: dict[str, Any]) -> None:
    for key in ("input_size", "resize_size"):
        if not _is_int(data[key]) or not 1 <= data[key] <= 100_000:
            raise ValueError(f"{key} {data[key]!r}")
    for key in ("mean", "std"):
        values = data[key]
        if not isinstance(values, list) or len(values) != 3 or not all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in values
        ):
            raise ValueError(f"{key} {values!r}")
    if any(v == 0 for v in data["std"]):
        raise ValueError("std 0")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _damaged(path: Path, detail: str) -> RunFolderError:
    return RunFolderError(
        f"{path} is damaged: {detail}. Restore the file from a copy, or train a new run into another folder"
    )


class _Checker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def that(self, ok: bool, field: str, problem: str) -> None:
        if not ok:
            self.fail(field, problem)

    def fail(self, field: str, problem: str) -> None:
        raise _damaged(self.path, f"{field} {problem}" if field else problem)
