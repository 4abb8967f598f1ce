"""Export a trained model to TorchScript or ONNX, with a parity check.

An export is only useful if it computes what PyTorch computes: every export is re-loaded and
run on sample images (the run's own validation images when known), and the largest absolute
logit difference against the PyTorch model is reported.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .atomic import write_atomically
from .data import build_transform
from .errors import HeadswapError
from .images import load_image
from .sources import LoadedModel
from .tracing import call_model, split_outputs

EXPORT_FORMATS = ("torchscript", "onnx")


@dataclass(frozen=True)
class ExportReport:
    """Where the export went and how closely it matches PyTorch."""

    path: str
    format: str
    max_abs_logit_difference: float
    samples: int
    sample_source: str  # "validation images", "given images" or "random inputs"

    def describe(self) -> str:
        return (
            f"wrote {self.format} model to {self.path}; parity on {self.samples} {self.sample_source}: "
            f"max |Δlogit| = {self.max_abs_logit_difference:.2e}"
        )


class _LogitsOnly(nn.Module):
    """Exports see a plain tensor in, logits out, whatever the model returns."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return split_outputs(call_model(self.model, images))[0]


def sample_images(loaded: LoadedModel, limit: int = 8) -> list[str]:
    """Up to ``limit`` of the run's validation images that still exist (none for a model
    that was not trained here)."""
    root = loaded.metadata.get("dataset_root")
    rows = (loaded.metadata.get("split") or {}).get("val") or []
    step = max(1, len(rows) // limit)  # spread over the classes, which the split keeps in order
    paths = [os.path.join(root, *str(row[0]).split("/")) for row in rows[::step]] if root else []
    return [path for path in paths if os.path.isfile(path)][:limit]


def sample_batch(loaded: LoadedModel, images: list[str] | None = None, limit: int = 8) -> tuple[torch.Tensor, str]:
    """Preprocessed sample images: the given ones, else the run's validation images, else noise."""
    source = "given images"
    if not images:
        images = sample_images(loaded, limit)
        source = "validation images"
    if images:
        transform = build_transform(loaded.preprocessing, "none", train=False)
        return torch.stack([transform(load_image(path)) for path in images[:limit]]), source
    generator = torch.Generator().manual_seed(0)
    size = loaded.preprocessing.input_size
    return torch.randn(4, 3, size, size, generator=generator), "random inputs"


def export_model(
    loaded: LoadedModel, export_format: str, path: str | os.PathLike[str], images: list[str] | None = None
) -> ExportReport:
    """Write ``loaded.model`` as TorchScript (``.pt``) or ONNX (``.onnx``) and check parity."""
    if export_format not in EXPORT_FORMATS:
        raise HeadswapError(f"unknown export format {export_format!r}; choose torchscript or onnx")
    device = next((p.device for p in loaded.model.parameters()), torch.device("cpu"))
    was_training = loaded.model.training
    try:
        return _export_on_cpu(loaded, export_format, Path(path), images)
    finally:  # the caller's model goes back where it was (a GPU, training mode)
        loaded.model.to(device).train(was_training)


def _export_on_cpu(loaded: LoadedModel, export_format: str, target: Path, images: list[str] | None) -> ExportReport:
    model = _LogitsOnly(loaded.model.eval()).to("cpu")
    batch, sample_source = sample_batch(loaded, images)
    with torch.inference_mode():
        expected = model(batch)
    if export_format == "torchscript":
        write_atomically(target, lambda temp: _export_torchscript(model, batch, temp))
        exported = torch.jit.load(str(target), map_location="cpu")
        with torch.inference_mode():
            actual = exported(batch)
    else:
        write_atomically(target, lambda temp: _export_onnx(model, batch, temp))
        actual = _run_onnx(target, batch)
    difference = float((expected - actual).abs().max())
    return ExportReport(str(target), export_format, difference, int(batch.shape[0]), sample_source)


def _export_torchscript(model: nn.Module, batch: torch.Tensor, temp: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, batch[:1], check_trace=False)
    torch.jit.save(traced, temp)


def _export_onnx(model: nn.Module, batch: torch.Tensor, temp: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (batch[:1],), temp, input_names=["images"], output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
            )
    except ImportError as error:
        raise HeadswapError(f"ONNX export needs the onnx package: pip install 'headswap[export]' ({error})") from error


def _run_onnx(path: Path, batch: torch.Tensor) -> torch.Tensor:
    try:
        import onnxruntime
    except ImportError as error:
        raise HeadswapError("the ONNX parity check needs onnxruntime: pip install 'headswap[export]'") from error
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"images": batch.numpy()})
    return torch.from_numpy(logits)
