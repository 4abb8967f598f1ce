"""Model folders and training runs on disk: ``model.safetensors`` + ``headswap.json``.

A folder written here is itself a model source (:func:`sources.load_model_folder` rebuilds
the exact model from it), holds no pickle, and is written atomically file by file, so a
killed process never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import write_text_atomically
from .heads import HeadInfo, built_heads, find_heads
from .run_manifest import FORMAT, FORMAT_VERSION, KIND_MODEL, LEGACY_WEIGHTS_FILE
from .sources import LoadedModel


def model_metadata(loaded: LoadedModel, heads: list[HeadInfo] | None = None) -> dict[str, Any]:
    """The part of ``headswap.json`` that rebuilds the model: architecture, heads, classes."""
    heads = heads if heads is not None else find_heads(loaded.model, loaded.preprocessing.input_size)
    designs = built_heads(loaded.model)
    main = next((h for h in heads if h.role == "main"), heads[0])
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source": loaded.source,
        "architecture": loaded.architecture,
        "num_classes": main.out_features,
        "heads": [
            {**head.to_dict(), "is_conv": head.is_conv, "spec": designs[head.path].to_dict()}
            for head in heads
            if head.path in designs
        ],
        "class_names": list(loaded.class_names) if loaded.class_names else None,
        "preprocessing": loaded.preprocessing.to_dict(),
        "versions": library_versions(),
    }


def library_versions() -> dict[str, str]:
    import torchvision

    versions = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__}
    try:
        import timm

        versions["timm"] = timm.__version__
    except ImportError:
        pass
    from .. import __version__

    versions["headswap"] = __version__
    return versions


def weights_writer(model: nn.Module) -> tuple[Callable[[str], None], int]:
    """A :data:`run_store.FileWriter` for the model's state dict as safetensors. The tensors
    are copied now, so the file holds the weights of this moment whenever it is written."""
    from safetensors.torch import save_file

    state = _state_for_safetensors(model)
    return (lambda temp: save_file(state, temp, metadata={"format": "pt"})), _bytes(state)


def _bytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def save_model_folder(
    folder: str | Path, loaded: LoadedModel, extra: dict[str, Any] | None = None, *, overwrite: bool = False
) -> Path:
    """Write ``loaded`` as a model folder; ``extra`` adds to the metadata. The folder is
    locked while it is written, and a folder holding a run or model is only replaced with
    ``overwrite`` (:class:`errors.RunExistsError` otherwise)."""
    from .run_store import RunWriter

    folder = Path(folder)
    writer = RunWriter(folder, overwrite=overwrite)
    try:
        manifest = {**model_metadata(loaded), "kind": KIND_MODEL, "weights_file": LEGACY_WEIGHTS_FILE, **(extra or {})}
        writer.commit(manifest, {LEGACY_WEIGHTS_FILE: weights_writer(loaded.model)})
    finally:
        writer.close()
    return folder


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    write_text_atomically(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _state_for_safetensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors; tied weights are cloned since safetensors refuses shared memory."""
    state: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        if pointer in seen:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        state[name] = tensor
    return state


# --- training runs ------------------------------------------------------------------------------
#
# A training run is a model folder (see run_manifest and run_store for the files and the order
# they are committed in) whose manifest also holds "training", "split", "epochs", "best_epoch",
# "finished"... The resume checkpoint of the last finished epoch is one safetensors file: the
# model ("model.<name>"), the optimizer's per-parameter tensors ("optim.<group>.<param
# name>.<key>"), and in its header, as JSON, everything else (epoch, schedule, parameter-group
# layout, RNG states as lists of ints, freeze phase) — tensors and the state that describes
# them in one file, so they can never disagree.

RESUME_FORMAT = "headswap-resume"
_STATE_KEY = "headswap_state"
_MODEL_PREFIX = "model."
_OPTIM_PREFIX = "optim."


class Checkpoint:
    """A resume checkpoint read back by :func:`read_checkpoint`."""

    def __init__(self, model_state: dict[str, torch.Tensor], optimizer_tensors: dict[str, torch.Tensor], state: dict[str, Any]):
        self.model_state = model_state
        self.optimizer_tensors = optimizer_tensors
        self.state = state

    @property
    def epoch(self) -> int:
        return int(self.state["epoch"])


def write_metrics_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """One CSV row per epoch record (the keys of the first row are the columns)."""
    import csv
    import io

    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    write_text_atomically(path, buffer.getvalue())


def optimizer_tensors_and_layout(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Split an optimizer's state into tensors (keyed ``<group index>.<param name>.<key>``) and
    a JSON-ready layout: per group its name, parameter names, hyperparameters and any
    non-tensor per-parameter state. Groups must carry ``param_names`` (see
    :func:`freezing.build_param_groups`)."""
    tensors: dict[str, torch.Tensor] = {}
    layout: list[dict[str, Any]] = []
    for index, group in enumerate(optimizer.param_groups):
        names = group.get("param_names")
        if names is None or len(names) != len(group["params"]):
            raise ValueError("optimizer parameter groups must record their param_names")
        scalars: dict[str, dict[str, Any]] = {}
        for name, param in zip(names, group["params"]):
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{index}.{name}.{key}"] = value.detach().to("cpu").contiguous()
                else:
                    scalars.setdefault(name, {})[key] = _json_value(value)
        hyper = {k: _json_value(v) for k, v in group.items() if k not in ("params", "param_names")}
        layout.append({"name": group.get("name", str(index)), "param_names": list(names), "hyper": hyper, "scalar_state": scalars})
    return tensors, layout


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], layout: list[dict[str, Any]]) -> None:
    """Restore what :func:`optimizer_tensors_and_layout` saved into an optimizer built over the
    same parameter groups (same names, same parameters, same order)."""
    from .errors import HeadswapError

    groups = optimizer.param_groups
    expected = [(g.get("name"), list(g.get("param_names", []))) for g in groups]
    recorded = [(g["name"], list(g["param_names"])) for g in layout]
    if expected != recorded:
        raise HeadswapError(
            "the checkpoint's optimizer has other parameter groups than this run "
            f"(checkpoint: {[n for n, _ in recorded]}, now: {[n for n, _ in expected]}); "
            "resume with the run's own freeze settings. A run made by an earlier headswap may group a timm "
            "model's parameters differently (position embeddings now without weight decay, blocks as timm "
            "groups them); then open its folder as a model and start a new run from it"
        )
    by_param: dict[tuple[int, str], dict[str, Any]] = {}
    for key, tensor in tensors.items():
        index_text, _, rest = key.partition(".")
        name, _, state_key = rest.rpartition(".")
        by_param.setdefault((int(index_text), name), {})[state_key] = tensor.clone()  # own, aligned memory
    state: dict[int, dict[str, Any]] = {}
    param_groups = []
    position = 0
    for index, saved in enumerate(layout):
        ids = []
        for name in saved["param_names"]:
            entry: dict[str, Any] = dict(saved.get("scalar_state", {}).get(name, {}))
            entry.update(by_param.get((index, name), {}))
            if entry:
                state[position] = entry
            ids.append(position)
            position += 1
        hyper = {k: (tuple(v) if isinstance(v, list) and k == "betas" else v) for k, v in saved["hyper"].items()}
        param_groups.append({**hyper, "param_names": saved["param_names"], "params": ids})
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})


def checkpoint_writer(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> tuple[Callable[[str], None], int]:
    """A :data:`run_store.FileWriter` for the resume checkpoint of this moment."""
    from safetensors.torch import save_file

    optim_tensors, layout = optimizer_tensors_and_layout(optimizer)
    full_state = {"format": RESUME_FORMAT, "format_version": FORMAT_VERSION, **state, "optimizer_layout": layout}
    tensors = {_MODEL_PREFIX + k: v for k, v in _state_for_safetensors(model).items()}
    tensors.update({_OPTIM_PREFIX + k: v for k, v in optim_tensors.items()})
    metadata = {"format": "pt", _STATE_KEY: json.dumps(full_state)}
    return (lambda temp: save_file(tensors, temp, metadata=metadata)), _bytes(tensors) + len(metadata[_STATE_KEY])


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read the resume checkpoint written by :func:`checkpoint_writer`."""
    from safetensors import safe_open

    from .errors import RunFolderError

    path = Path(path)
    if not path.is_file():
        raise RunFolderError(f"the run's checkpoint {path} is missing; the folder was changed by hand")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        state = json.loads(metadata[_STATE_KEY])
    except Exception as error:
        raise RunFolderError(f"{path} is damaged ({error}); start a new run") from error
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT or not isinstance(state.get("epoch"), int):
        raise RunFolderError(f"{path} is not a headswap resume checkpoint")
    model_state = {k[len(_MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(_MODEL_PREFIX)}
    optim = {k[len(_OPTIM_PREFIX):]: v for k, v in tensors.items() if k.startswith(_OPTIM_PREFIX)}
    return Checkpoint(model_state, optim, state)


def _json_value(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value
