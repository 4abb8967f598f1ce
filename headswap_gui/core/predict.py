"""Top-k predictions for images, with the model's own preprocessing and class names.

Used by ``headswap predict`` and the window's "Try it" panel: both must read images exactly
as training's validation did, or predictions silently degrade.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .data import build_transform
from .images import load_image
from .sources import LoadedModel
from .tracing import call_model, split_outputs


@dataclass(frozen=True)
class Prediction:
    """The top-k classes for one image, most probable first."""

    image: str
    labels: tuple[str, ...]
    probabilities: tuple[float, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "image": self.image,
            "top": [{"label": label, "probability": round(p, 6)} for label, p in zip(self.labels, self.probabilities)],
        }


def predict_images(
    loaded: LoadedModel, images: Sequence[str | os.PathLike[str]], top_k: int = 3, batch_size: int = 32
) -> list[Prediction]:
    """Classify image files; raises ``DataError`` naming a file that cannot be read."""
    model = loaded.model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    transform = build_transform(loaded.preprocessing, "none", train=False)
    names = loaded.class_names
    predictions: list[Prediction] = []
    for start in range(0, len(images), batch_size):
        chunk = [str(path) for path in images[start : start + batch_size]]
        batch = torch.stack([transform(load_image(path)) for path in chunk]).to(device)
        with torch.inference_mode():
            logits, _ = split_outputs(call_model(model, batch))
        probabilities = logits.float().softmax(dim=1)
        k = min(top_k, probabilities.shape[1])
        top = probabilities.topk(k, dim=1)
        for path, values, indices in zip(chunk, top.values.tolist(), top.indices.tolist()):
            labels = tuple(names[i] if names and i < len(names) else f"class {i}" for i in indices)
            predictions.append(Prediction(path, labels, tuple(values)))
    return predictions
