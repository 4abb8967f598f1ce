"""How a model expects its input images: size, resize, crop, interpolation, mean and std.

Feeding a pretrained backbone images normalised differently from its pretraining is the
silent accuracy killer from the tutorial's pitfall list; so every loaded model carries one of
these, taken from the model's own metadata, and every transform is built from it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Eval-time preprocessing: resize the short side to ``resize_size``, centre-crop
    ``input_size``, scale to [0, 1], normalise with ``mean``/``std``."""

    input_size: int = 224
    resize_size: int = 256
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def crop_fraction(self) -> float:
        return self.input_size / self.resize_size

    def with_input_size(self, input_size: int) -> Preprocessing:
        """The same preprocessing at another input size, keeping the crop fraction."""
        resize = int(math.floor(input_size / self.crop_fraction + 0.5))
        return replace(self, input_size=int(input_size), resize_size=max(resize, int(input_size)))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(
            input_size=int(data["input_size"]),
            resize_size=int(data["resize_size"]),
            interpolation=str(data.get("interpolation", "bilinear")),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
        )

    def describe(self) -> str:
        mean = ", ".join(f"{v:.3f}" for v in self.mean)
        std = ", ".join(f"{v:.3f}" for v in self.std)
        return (
            f"resize {self.resize_size} ({self.interpolation}), centre crop {self.input_size}, "
            f"mean ({mean}), std ({std})"
        )
