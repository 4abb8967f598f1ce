"""Model folders and training runs on disk: ``model.safetensors`` + ``headswap.json``.

A folder written here is itself a model source (:func:`sources.load_model_folder` rebuilds
the exact model from it), holds no pickle, and is written atomically file by file, so a
killed process never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import write_atomically, write_text_atomically
from .heads import HeadInfo, built_heads, find_heads
from .sources import RUN_METADATA_FILE, RUN_WEIGHTS_FILE, LoadedModel

FORMAT_VERSION = 1


def model_metadata(loaded: LoadedModel, heads: list[HeadInfo] | None = None) -> dict[str, Any]:
    """The part of ``headswap.json`` that rebuilds the model: architecture, heads, classes."""
    heads = heads if heads is not None else find_heads(loaded.model, loaded.preprocessing.input_size)
    designs = built_heads(loaded.model)
    main = next((h for h in heads if h.role == "main"), heads[0])
    return {
        "format": "headswap-model",
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


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write the model's state dict as safetensors, atomically."""
    from safetensors.torch import save_file

    state = _state_for_safetensors(model)
    write_atomically(path, lambda temp: save_file(state, temp, metadata={"format": "pt"}))


def save_model_folder(folder: str | Path, loaded: LoadedModel, extra: dict[str, Any] | None = None) -> Path:
    """Write ``loaded`` as a model folder; ``extra`` adds to the metadata (training config,
    metrics, split...). The weights are written before the metadata that points at them."""
    folder = Path(folder)
    metadata = {**model_metadata(loaded), **(extra or {})}
    save_weights(loaded.model, folder / RUN_WEIGHTS_FILE)
    write_json(folder / RUN_METADATA_FILE, metadata)
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
