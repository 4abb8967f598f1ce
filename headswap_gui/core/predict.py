"""Top-k predictions for images, with the model's own preprocessing and class names.

Used by ``headswap predict`` and the window's "Try it" panel: both must read images exactly
as training's validation did, or predictions silently degrade.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import UnidentifiedImageError

from .data import build_transform, printable_path
from .errors import DataError, describe_os_error
from .images import load_image
from .sources import LoadedModel
from .tracing import call_model, split_outputs


@dataclass(frozen=True)
class Prediction:
    """The top-k classes for one image, most probable first; or, for an image that could
    not be classified, empty tuples and ``error``, a sentence saying why."""

    image: str
    labels: tuple[str, ...]
    probabilities: tuple[float, ...]
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        if self.error is not None:
            return {"image": printable_path(self.image), "error": self.error}
        return {
            "image": printable_path(self.image),
            "top": [{"label": label, "probability": round(p, 6)} for label, p in zip(self.labels, self.probabilities)],
        }


def predict_images(
    loaded: LoadedModel, images: Sequence[str | os.PathLike[str]], top_k: int = 3, batch_size: int = 32
) -> list[Prediction]:
    """Classify image files, one :class:`Prediction` per file in order. A file that cannot
    be read, or whose output is not a number (a damaged model), gets its ``error`` and costs
    only its own row."""
    model = loaded.model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    transform = build_transform(loaded.preprocessing, "none", train=False)
    names = loaded.class_names
    results: dict[int, Prediction] = {}
    paths = [str(path) for path in images]
    for start in range(0, len(paths), batch_size):
        tensors, indices = [], []
        for index in range(start, min(start + batch_size, len(paths))):
            try:
                tensors.append(transform(load_image(paths[index])))
                indices.append(index)
            except (OSError, SyntaxError, ValueError, EOFError, MemoryError, DataError) as error:
                results[index] = Prediction(paths[index], (), (), _unreadable(error))
        if not tensors:
            continue
        with torch.inference_mode():
            logits, _ = split_outputs(call_model(model, torch.stack(tensors).to(device)))
        probabilities = logits.float().softmax(dim=1)
        k = min(top_k, probabilities.shape[1])
        finite = torch.isfinite(probabilities).all(dim=1).tolist()
        top = probabilities.topk(k, dim=1)
        for index, ok, values, classes in zip(indices, finite, top.values.tolist(), top.indices.tolist()):
            if not ok:
                results[index] = Prediction(paths[index], (), (), NOT_A_NUMBER)
                continue
            labels = tuple(names[i] if names and i < len(names) else f"class {i}" for i in classes)
            results[index] = Prediction(paths[index], labels, tuple(values))
    return [results[index] for index in range(len(paths))]


NOT_A_NUMBER = (
    "the model's output is not a number (NaN) for this image, so its weights are damaged "
    "(for example by a diverged run); load an earlier run or train again"
)


def _unreadable(error: BaseException) -> str:
    if isinstance(error, DataError):
        return str(error)
    if isinstance(error, UnidentifiedImageError):
        return "not an image Pillow can read"
    if isinstance(error, OSError) and error.errno is not None:
        return f"cannot read the file: {describe_os_error(error)}"
    detail = str(error).strip().splitlines()[0] if str(error).strip() else "damaged content"
    return f"cannot decode the image ({detail})"
