"""What a training run settles before it trains: that a resumed run continues as recorded,
that the model's heads fit the classes (and can be rebuilt from the run folder), and which
images it trains and validates on.

Each check raises a :class:`HeadswapError` subclass that says what does not fit and what to
do, before anything is written; what it only wants the user to know comes back as notes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from .data import DatasetInfo, SplitInfo, split_samples
from .errors import HeadswapError, RunSettingsError
from .heads import SPEC_ATTRIBUTE, HeadInfo, HeadSpec, find_heads
from .sources import LoadedModel, swap_head
from .train_config import TrainConfig, resume_settings_problems

__all__ = ["check_heads", "check_resume", "run_split"]


def check_resume(
    recorded: dict[str, Any], config: TrainConfig, class_names: tuple[str, ...], run_dir: Path | None,
    dataset_root: Path | str,
) -> None:
    """A resumed run continues only on the same classes and with its recorded settings,
    except those in :data:`train_config.RESUME_MAY_CHANGE`."""
    if recorded.get("class_names") and tuple(recorded["class_names"]) != class_names:
        raise RunSettingsError(
            f"the run in {run_dir} was trained on the classes {', '.join(recorded['class_names'])}, "
            f"but {dataset_root} has {', '.join(class_names)}; resume it on the same image folder"
        )
    problems = resume_settings_problems(recorded.get("training") or {}, config)
    if problems:
        raise RunSettingsError(
            f"the run in {run_dir} cannot continue with other settings ({'; '.join(problems)}): its "
            "weights were trained with the recorded ones. Resume with the run's own settings (only epochs, "
            "patience, device, precision, workers and threads may change), or start a new run"
        )


def check_heads(
    loaded: LoadedModel, class_names: tuple[str, ...], input_size: int, dataset_root: Path | str,
    head_spec: HeadSpec | None, known: Sequence[HeadInfo] | None,
) -> tuple[list[HeadInfo], list[str]]:
    """The model's heads, each with one output per class, and notes for the run's log.

    ``known`` are heads the caller traced already (a second trace would cost seconds). A head
    with another output count is swapped for a ``head_spec`` head when one is given, and
    refused otherwise. A plain Linear or 1×1 Conv head is marked as a default head, so the run
    folder can rebuild the model; any other head built elsewhere gets a note saying it cannot.
    """
    model = loaded.model
    n = len(class_names)
    notes: list[str] = []
    names = dict(model.named_modules())
    heads = list(known) if known and all(h.path in names for h in known) else find_heads(model, input_size)
    wrong = [h for h in heads if h.out_features != n]
    if wrong and head_spec is not None:
        swap_head(loaded, n, head_spec, class_names=class_names)
        notes.append(f"replaced the head with a new {head_spec.describe()} head for {n} classes")
        heads = find_heads(model, input_size)
        wrong = [h for h in heads if h.out_features != n]
    if wrong:
        detail = ", ".join(f"{h.path} has {h.out_features}" for h in wrong)
        classes = f"{n} class{'es' if n != 1 else ''}"
        raise HeadswapError(
            f"the model's head does not fit the data: {classes} in {dataset_root}, but {detail} "
            f"outputs; swap the head for one with {n} outputs first"
        )
    for head in heads:
        module = model.get_submodule(head.path)
        if hasattr(module, SPEC_ATTRIBUTE):
            continue
        if _is_default_head(module):
            setattr(module, SPEC_ATTRIBUTE, HeadSpec())
        else:
            notes.append(
                f"the head {head.path} ({type(module).__name__}) was not built by headswap, so the run "
                "folder will not be able to rebuild the model; swap the head with headswap to fix that"
            )
    return heads, notes


def run_split(
    dataset: DatasetInfo, config: TrainConfig, recorded: dict[str, Any] | None,
) -> tuple[SplitInfo, list[str]]:
    """The train/validation split: drawn from the seed, or — resuming — the one recorded with
    the run (its images must all still be there), with a note when the two differ."""
    fresh = split_samples(dataset, config.val_fraction, config.seed)
    if not recorded or not recorded.get("split"):
        return fresh, []
    split = SplitInfo.from_dict(recorded["split"], dataset.root)
    notes = []
    if _paths(split) != _paths(fresh):
        notes.append(
            f"using the split recorded with the run ({len(split.train)} train, {len(split.val)} val), "
            "not the one these settings would draw"
        )
    missing = [s.path for s in split.train + split.val if not os.path.isfile(s.path)]
    if missing:
        raise HeadswapError(
            f"{len(missing)} images of the run's recorded split are missing (e.g. {missing[0]}); "
            "resume needs the same image folder"
        )
    return split, notes


def _is_default_head(module: nn.Module) -> bool:
    """What ``HeadSpec()`` builds: a plain Linear with bias, or its 1×1 Conv form."""
    if type(module) is nn.Linear:
        return module.bias is not None
    return (
        type(module) is nn.Conv2d and module.kernel_size == (1, 1) and module.stride == (1, 1)
        and module.padding == (0, 0) and module.groups == 1 and module.bias is not None
    )


def _paths(split: SplitInfo) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(sorted(s.path for s in split.train)), tuple(sorted(s.path for s in split.val))
