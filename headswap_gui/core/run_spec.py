"""A run's whole recipe as a file: what ``headswap train --config FILE`` reads.

The window writes one ("Run on a cluster…"), a finished run carries one (its ``headswap.json``
records the source, the image folder, the head and the training settings), and a person can
write one by hand in JSON or TOML. Training from any of them repeats the run: the same source,
head design, images, split and settings.

The file (JSON; TOML with the same keys, where a missing value means the default)::

    {"format": "headswap-train-config", "format_version": 1,
     "source": "timm:resnet50", "data": "/data/pets", "output": "/runs/pets",
     "head": {"design": "linear", ...}, "training": {TrainConfig fields}}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import tomllib

from .atomic import write_atomically
from .errors import HeadswapError
from .heads import HeadSpec
from .run_manifest import FORMAT as MANIFEST_FORMAT
from .run_manifest import KIND_TRAINING_RUN, manifest_kind
from .train_config import TrainConfig

FORMAT = "headswap-train-config"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TrainSpec:
    """What to train, on what, into where, and how: one run, repeatable from a file."""

    source: str | None
    data: str | None
    config: TrainConfig
    head: HeadSpec | None = None  # None: the default head (or the command line's)
    output: str | None = None  # None: a new folder in the runs folder

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "source": self.source,
            "data": self.data,
            "output": self.output,
            "head": self.head.to_dict() if self.head is not None else None,
            "training": self.config.to_dict(),
        }


def write_train_spec(path: str | os.PathLike[str], spec: TrainSpec) -> Path:
    """Write ``spec`` as JSON (atomically: a reader never sees half a file)."""
    target = Path(path)
    text = json.dumps(spec.to_dict(), indent=2, ensure_ascii=False) + "\n"
    write_atomically(target, lambda temp: Path(temp).write_text(text, encoding="utf-8"))
    return target


def read_train_spec(path: str | os.PathLike[str]) -> TrainSpec:
    """Read a config file (JSON, or TOML by its ``.toml`` suffix) or a training run's
    ``headswap.json``; :class:`HeadswapError` says what is wrong with it, by key."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as error:
        raise HeadswapError(f"cannot read the config file {source}: {error.strerror or error}") from error
    try:
        data = tomllib.loads(text) if source.suffix.lower() == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        kind = "TOML" if source.suffix.lower() == ".toml" else "JSON"
        raise HeadswapError(f"{source} is not valid {kind}: {error}") from error
    if not isinstance(data, dict):
        raise HeadswapError(f"{source} holds no settings object")
    if data.get("format") == MANIFEST_FORMAT:
        if manifest_kind(data) != KIND_TRAINING_RUN:
            raise HeadswapError(f"{source} describes a model, not a training run; it has no training settings")
        return _from_manifest(data, source)
    if data.get("format", FORMAT) != FORMAT:
        raise HeadswapError(f"{source} is a {data.get('format')!r} file, not a headswap training config")
    version = data.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise HeadswapError(f"{source} has format_version {version!r}; this headswap reads version {FORMAT_VERSION}")
    unknown = sorted(set(data) - {"format", "format_version", "source", "data", "output", "head", "training"})
    if unknown:
        raise HeadswapError(f"{source} has unknown keys: {', '.join(unknown)}")
    training = data.get("training") or {}
    if not isinstance(training, dict):
        raise HeadswapError(f"{source}: training is not a table of settings")
    known = {f.name for f in fields(TrainConfig)}
    wrong = sorted(set(training) - known)
    if wrong:  # a typo would otherwise train with the default without a word
        raise HeadswapError(f"{source}: unknown training settings {', '.join(wrong)}")
    return TrainSpec(
        source=_text(data, "source", source),
        data=_text(data, "data", source),
        output=_text(data, "output", source),
        head=_head(data.get("head"), source),
        config=TrainConfig.from_dict(training),
    )


def _from_manifest(data: dict[str, Any], path: Path) -> TrainSpec:
    """A finished (or interrupted) run's recipe; its output is left to the caller, so the
    run is repeated beside it rather than over it."""
    heads = data.get("heads") or []
    main = next((h for h in heads if h.get("role") == "main"), heads[0] if heads else None)
    return TrainSpec(
        source=_text(data, "source", path),
        data=_text(data, "dataset_root", path),
        head=_head(main.get("spec") if main else None, path),
        config=TrainConfig.from_dict(data.get("training") or {}),
    )


def _text(data: dict[str, Any], key: str, path: Path) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise HeadswapError(f"{path}: {key} must be a string, not {value!r}")
    return value


def _head(value: Any, path: Path) -> HeadSpec | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise HeadswapError(f"{path}: head must be a table of the head's design, not {value!r}")
    try:
        return HeadSpec.from_dict(value)
    except (TypeError, ValueError) as error:
        raise HeadswapError(f"{path}: the head's design is not usable ({error})") from error
