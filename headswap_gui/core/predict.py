"""Top-k predictions for images, with the model's own preprocessing and class names.

Used by ``headswap predict`` and the window's "Try it" panel: both must read images exactly
as training's validation did, or predictions silently degrade. Both also share the "not sure"
threshold and the CSV format below, so a file saved from the window reads like one from the
command line.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import UnidentifiedImageError

from .atomic import write_atomically
from .data import build_transform, printable_path
from .errors import DataError, HeadswapError, describe_os_error
from .images import load_image
from .sources import LoadedModel
from .tracing import call_model, split_outputs

NOT_SURE_BELOW = 0.6
"""A top probability under this reads as "not sure". Softmax always names *some* class, even
for an untrained head or an image unlike any class (random weights over 3 classes give about
0.4); a new user takes the top label as the answer unless it is flagged. 0.6 keeps clear
winners and flags coin tosses. The one place this number lives: CLI and window both use it."""


def is_not_sure(probability: float, threshold: float = NOT_SURE_BELOW) -> bool:
    """Whether a top probability is too low to present the label as the answer."""
    return probability < threshold


@dataclass(frozen=True)
class Prediction:
    """The top-k classes for one image, most probable first; or, for an image that could
    not be classified, empty tuples and ``error``, a sentence saying why."""

    image: str
    labels: tuple[str, ...]
    probabilities: tuple[float, ...]
    error: str | None = None

    def not_sure(self, threshold: float = NOT_SURE_BELOW) -> bool:
        """Whether the top class is too unlikely to be given as the answer (never for an error row)."""
        return bool(self.probabilities) and is_not_sure(self.probabilities[0], threshold)

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


def write_predictions_csv(
    path: str | os.PathLike[str], predictions: Sequence[Prediction], not_sure_below: float = NOT_SURE_BELOW
) -> None:
    """Write one CSV row per prediction: ``image, label, probability, label_2, probability_2,
    …, not_sure, error`` (as many label/probability pairs as the longest top-k).

    The file appears whole or not at all (a temp file renamed over ``path``), so an existing
    file is never left half-replaced. A write that fails raises :class:`HeadswapError` naming
    the file and the reason.
    """
    if os.path.isdir(path):
        raise HeadswapError(
            f"{printable_path(os.fspath(path))} is a folder; give a file name, e.g. "
            f"{printable_path(os.path.join(path, 'predictions.csv'))}"
        )
    k = max((len(p.labels) for p in predictions), default=1) or 1
    header = ["image", "label", "probability"]
    header += [name for rank in range(2, k + 1) for name in (f"label_{rank}", f"probability_{rank}")]
    header += ["not_sure", "error"]

    def write(temp: str) -> None:
        with open(temp, "w", encoding="utf-8", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(header)
            for row in predictions:
                ranked = [cell for label, p in zip(row.labels, row.probabilities) for cell in (label, f"{p:.6f}")]
                ranked += [""] * (2 * k - len(ranked))
                unsure = "" if row.error is not None else str(row.not_sure(not_sure_below)).lower()
                writer.writerow([printable_path(row.image), *ranked, unsure, row.error or ""])

    try:
        write_atomically(path, write)
    except OSError as error:
        # Name the file only when it is not write_atomically's hidden temp file (".NAME.xxxx.tmp"),
        # which the user never asked for; a parent that is a file, say, is worth naming.
        temp = os.path.basename(error.filename or "").startswith(f".{os.path.basename(path)}.")
        shown = OSError(error.errno, error.strerror) if temp else error
        raise HeadswapError(f"cannot write {printable_path(os.fspath(path))}: {describe_os_error(shown)}") from error


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
