"""Explain a prediction: a class-activation heatmap over the image (Grad-CAM).

Which layer: the last layer with a spatial output that the class score depends on, found in
the same traced forward pass that finds the heads (:func:`heads.detect_heads`), never by
attribute names. Spatial outputs are feature maps (B×C×H×W, or B×H×W×C as Swin's) and patch
tokens (B×N×C: a ViT's tokens minus its class and register tokens, reshaped to the patch grid
that timm names in ``patch_embed.grid_size`` and ``num_prefix_tokens``). The last few such
layers before the head are hooked for one real forward, and the latest one whose gradient is
not zero is used: for a CNN that is its last feature map; for a ViT that reads its class
token, whose final norm and MLP work token by token (the patch tokens' gradient there is
exactly zero), it is the input of the last attention, where the patches reach the class token.
That map says which tokens the last attention reads; in a ViT whose earlier blocks have
already spread the evidence over many tokens it is coarser than a CNN's (a known limit of
Grad-CAM on class-token ViTs; an average-pooled ViT is mapped at its final norm, token by token).

Grad-CAM, in a few lines of our own rather than ``grad-cam`` or ``torchcam``. ``grad-cam``
(pytorch-grad-cam) puts the model in eval mode for good, calls ``model.zero_grad()`` and
``backward()`` (wiping a gradient being accumulated, then leaving one on every parameter), and
depends on OpenCV (which bundles its own Qt), matplotlib, scipy and ttach. ``torchcam`` depends
on matplotlib, takes its layer by name or finds it with its own dummy pass, and what this
module needs around the CAM itself — the layer from our trace, the token layout, the mapping
back through the crop — would be ours either way. Here the hooks exist only for the call
(removed in ``finally``), the gradient is taken with :func:`torch.autograd.grad` with respect
to the hooked activations alone (no parameter's ``.grad`` is read or written), and every
module's train/eval mode is restored.

The image is read with the model's own eval preprocessing (the transform predictions use), and
the heatmap is mapped back through that resize and centre crop onto the original image: it is
returned at the image's resolution, zero outside the part of the image the model saw.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import nn

from .atomic import write_atomically
from .data import MAX_ASPECT_RATIO, build_transform, printable_path
from .errors import DataError, HeadError, HeadswapError, describe_os_error
from .images import load_image, to_rgb
from .preprocessing import Preprocessing
from .sources import LoadedModel
from .tracing import TraceResult, call_model, first_tensor, split_outputs, trace_forward

__all__ = [
    "CamLayer",
    "Explanation",
    "NoSpatialLayerError",
    "crop_box",
    "explain_image",
    "find_cam_layers",
    "heatmap_colours",
    "read_image",
    "render_overlay",
    "resolve_class",
    "write_overlay",
]

MAX_CANDIDATES = 32
"""How many of the last spatial layers are hooked for the real pass. A ViT block has about a
dozen token-shaped outputs; 32 reaches back past the last block's attention in any of them."""

LayerKind = Literal["feature map", "tokens"]


class NoSpatialLayerError(HeadswapError):
    """The model has no feature map or patch tokens before its head, so nothing to map."""


@dataclass(frozen=True)
class CamLayer:
    """A layer whose output can be read as a map over the image."""

    path: str
    kind: LayerKind
    channels_last: bool = False  # a B×H×W×C feature map (Swin) instead of B×C×H×W
    prefix_tokens: int = 0  # tokens: class/register tokens before the patches
    grid: tuple[int, int] = (0, 0)  # tokens: the patch grid (rows, columns)


@dataclass(frozen=True, eq=False)
class Explanation:
    """A heatmap for one image and one class.

    ``heatmap`` is float32 in [0, 1] at the image's resolution (height × width), zero outside
    ``crop_box`` (left, top, right, bottom in image pixels: the part the model saw after its
    resize and centre crop); ``cam`` is the same map at the layer's own resolution.
    """

    image: str | None
    class_index: int
    label: str
    probability: float
    predicted_index: int
    predicted_label: str
    layer: str
    kind: LayerKind
    cam: np.ndarray
    heatmap: np.ndarray
    crop_box: tuple[float, float, float, float]

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the image the heatmap covers."""
        return int(self.heatmap.shape[1]), int(self.heatmap.shape[0])

    @property
    def empty(self) -> bool:
        """True when nothing in the image speaks for the class (the map is zero everywhere)."""
        return not bool(np.any(self.cam > 0))

    def describe(self) -> str:
        where = f"{self.kind} of {self.layer}"
        if self.class_index == self.predicted_index:
            return f"{self.label} ({self.probability:.1%}, the predicted class), from the {where}"
        return f"{self.label} ({self.probability:.1%}; predicted: {self.predicted_label}), from the {where}"


# --- which layer ------------------------------------------------------------------------------


def find_cam_layers(model: nn.Module, input_size: int) -> tuple[CamLayer, ...]:
    """The layers with a spatial output that run before the model's head, latest first.

    One traced dummy forward (the one head detection runs) gives every layer's output shape in
    execution order. A layer qualifies when it finishes before the first head does, lies
    outside every head, and outputs for each image either a map with more than one position
    or tokens that are a patch grid plus a few prefix tokens, as wide as the head's input.
    Raises :class:`NoSpatialLayerError` when none does (an MLP on pixels, say), and
    :class:`HeadswapError` for a model that outputs features rather than classes.
    """
    from .heads import detect_heads

    heads: tuple[Any, ...] = ()
    trace: TraceResult | None = None
    try:
        detection = detect_heads(model, input_size)
        heads, trace = detection.heads, detection.eval_trace
    except HeadError:
        pass  # no head found: every layer up to the output is a candidate
    if any(head.role == "new" for head in heads):
        raise HeadswapError(
            "the model outputs features, not class scores (it has no classifier head yet); "
            "give it a head, then explain its predictions"
        )
    if trace is None:
        trace = trace_forward(model, input_size)
    batch = int(trace.images.shape[0]) if trace.images is not None else 2
    width = heads[0].in_features if heads else None
    head_paths = [head.path for head in heads]
    order = {path: index for index, path in enumerate(trace.executed)}
    end = min((order[path] for path in head_paths if path in order), default=len(trace.executed))
    grid = _token_grid(model)
    found: list[CamLayer] = []
    for path in trace.executed[:end]:
        if not path or any(path == head or path.startswith(head + ".") for head in head_paths):
            continue
        shape = trace.output_shapes.get(path)
        if shape is None or shape[0] != batch:
            continue
        layer = _as_cam_layer(path, shape, width, grid)
        if layer is not None:
            found.append(layer)
    token_counts = {layer.prefix_tokens + layer.grid[0] * layer.grid[1] for layer in found if layer.kind == "tokens"}
    if token_counts:  # B×heads×N×d inside an attention is not a map over the image
        found = [
            layer for layer in found
            if layer.kind == "tokens" or trace.output_shapes[layer.path][2] not in token_counts
        ]
    if not found:
        raise NoSpatialLayerError(
            "the model has no layer with a spatial output (feature maps or patch tokens) before its head, "
            "so there is no map over the image to show"
        )
    return tuple(reversed(found))


def _as_cam_layer(
    path: str, shape: tuple[int, ...], width: int | None, grid: tuple[int, tuple[int, int] | None] | None
) -> CamLayer | None:
    if len(shape) == 4:
        channels_last = width is not None and shape[3] == width and shape[1] != width
        rows, cols = (shape[1], shape[2]) if channels_last else (shape[2], shape[3])
        return CamLayer(path, "feature map", channels_last=channels_last) if rows * cols > 1 else None
    if len(shape) == 3:
        tokens, channels = shape[1], shape[2]
        if width is not None and channels != width:
            return None  # a projection inside a block (qkv, the MLP's hidden layer), not the stream
        layout = _patch_layout(tokens, grid)
        if layout is None:
            return None
        prefix, (rows, cols) = layout
        return CamLayer(path, "tokens", prefix_tokens=prefix, grid=(rows, cols)) if rows * cols > 1 else None
    return None


def _token_grid(model: nn.Module) -> tuple[int, tuple[int, int] | None] | None:
    """(prefix tokens, patch grid) as the model states them (timm), else None."""
    prefix = getattr(model, "num_prefix_tokens", None)
    patch_embed = getattr(model, "patch_embed", None)
    grid = getattr(patch_embed, "grid_size", None) if patch_embed is not None else None
    grid = tuple(int(g) for g in grid) if isinstance(grid, (tuple, list)) and len(grid) == 2 else None
    if isinstance(prefix, int) and prefix >= 0:
        return prefix, grid  # type: ignore[return-value]
    if isinstance(getattr(model, "class_token", None), torch.Tensor):  # torchvision's VisionTransformer
        return 1, None
    return None


def _patch_layout(tokens: int, stated: tuple[int, tuple[int, int] | None] | None) -> tuple[int, tuple[int, int]] | None:
    """How ``tokens`` split into prefix tokens and a patch grid: the model's own numbers where
    they fit, else a square grid behind the fewest prefix tokens (at most 8: a class token,
    a distillation token, registers)."""
    if stated is not None:
        prefix, grid = stated
        if grid is not None and prefix + grid[0] * grid[1] == tokens:
            return prefix, grid
        side = math.isqrt(max(tokens - prefix, 0))
        return (prefix, (side, side)) if side * side == tokens - prefix else None
    for prefix in range(0, 9):
        side = math.isqrt(max(tokens - prefix, 0))
        if side > 1 and side * side == tokens - prefix:
            return prefix, (side, side)
    return None


# --- the heatmap ------------------------------------------------------------------------------


def resolve_class(loaded: LoadedModel, target: int | str | None, num_classes: int) -> int | None:
    """The class index ``target`` names (a class name or an index), or None for "predicted".
    Raises :class:`HeadswapError` listing the valid names for one that is not a class."""
    if target is None:
        return None
    names = _class_names(loaded, num_classes)
    if isinstance(target, str):
        if target in names:
            return names.index(target)
        shown = ", ".join(names[:40]) + (f", … ({len(names)} in all)" if len(names) > 40 else "")
        raise HeadswapError(f"{target!r} is not one of the model's classes; choose one of: {shown}")
    index = int(target)
    if not 0 <= index < num_classes:
        raise HeadswapError(f"class index {index} is out of range: the model has {num_classes} classes (0 to {num_classes - 1})")
    return index


def explain_image(
    loaded: LoadedModel,
    image: str | os.PathLike[str] | Image.Image,
    target: int | str | None = None,
    *,
    layers: Sequence[CamLayer] | None = None,
) -> Explanation:
    """The Grad-CAM heatmap of ``image`` (a file or a PIL image) for class ``target``: a
    class name, an index, or None for the predicted class.

    ``layers`` is :func:`find_cam_layers`'s answer, for callers explaining many images with one
    model. The model is left as it was: its train/eval mode, no hooks, no ``.grad`` on any
    parameter. Raises :class:`HeadswapError` for an unreadable image, an unknown class, or a
    model without weights or without a spatial layer.
    """
    if loaded.structure_only:
        raise HeadswapError("the model was loaded without its weights; load it with weights to explain predictions")
    path = None if isinstance(image, Image.Image) else os.fspath(image)
    picture = to_rgb(image) if isinstance(image, Image.Image) else read_image(path)  # type: ignore[arg-type]
    model = loaded.model
    preprocessing = loaded.preprocessing
    if layers is None:
        layers = find_cam_layers(model, preprocessing.input_size)
    layers = list(layers)[:MAX_CANDIDATES]
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32

    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}

    def capture(path: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            tensor = first_tensor(output)
            if tensor is not None:
                captured[path] = tensor  # the last call wins (a module run twice, e.g. a shared ReLU)

        return hook

    modes = {module: module.training for module in model.modules()}
    handles = [modules[layer.path].register_forward_hook(capture(layer.path)) for layer in layers if layer.path in modules]
    try:
        model.eval()
        with torch.inference_mode(False), torch.enable_grad():  # a worker may run under inference_mode
            batch = build_transform(preprocessing, "none", train=False)(picture).unsqueeze(0).to(device, dtype)
            inputs = batch.requires_grad_(True)  # so activations carry a graph even with every weight frozen
            logits, _ = split_outputs(call_model(model, inputs))
            logits = logits.float()
            if logits.dim() != 2:
                raise HeadswapError("the model's output is not one score per class, so there is no class to explain")
            probabilities = logits.detach().softmax(dim=1)[0]
            if not torch.isfinite(probabilities).all():
                raise HeadswapError("the model's output is not a number (NaN) for this image: its weights are damaged")
            num_classes = int(logits.shape[1])
            predicted = int(probabilities.argmax())
            chosen = resolve_class(loaded, target, num_classes)
            index = predicted if chosen is None else chosen
            usable = [layer for layer in layers if layer.path in captured and captured[layer.path].requires_grad]
            if not usable:
                raise NoSpatialLayerError("the class score does not depend on any spatial layer of the model")
            gradients = torch.autograd.grad(
                logits[0, index], [captured[layer.path] for layer in usable], allow_unused=True
            )
        layer, activation, gradient = _pick(usable, [captured[layer.path] for layer in usable], gradients)
        cam = _grad_cam(layer, activation, gradient)
    finally:
        for handle in handles:
            handle.remove()
        for module, was_training in modes.items():
            module.training = was_training
        captured.clear()
    names = _class_names(loaded, num_classes)
    box = crop_box(picture.size, preprocessing)
    return Explanation(
        image=path,
        class_index=index,
        label=names[index],
        probability=float(probabilities[index]),
        predicted_index=predicted,
        predicted_label=names[predicted],
        layer=layer.path,
        kind=layer.kind,
        cam=cam,
        heatmap=_to_image(cam, picture.size, box),
        crop_box=box,
    )


def _pick(
    layers: list[CamLayer], activations: list[torch.Tensor], gradients: Sequence[torch.Tensor | None]
) -> tuple[CamLayer, torch.Tensor, torch.Tensor]:
    """The latest layer whose spatial positions the score depends on (a non-zero gradient
    there); else the latest with any gradient (a map of zeros: no positive evidence)."""
    fallback = None
    for layer, activation, gradient in zip(layers, activations, gradients):
        if gradient is None:
            continue
        spatial = gradient[:, layer.prefix_tokens :] if layer.kind == "tokens" else gradient
        if bool(spatial.detach().abs().amax() > 0):
            return layer, activation, gradient
        fallback = fallback or (layer, activation, gradient)
    if fallback is None:
        raise NoSpatialLayerError("the class score does not depend on any spatial layer of the model")
    return fallback


def _grad_cam(layer: CamLayer, activation: torch.Tensor, gradient: torch.Tensor) -> np.ndarray:
    """ReLU(Σ_c mean(∂score/∂A_c) · A_c), scaled to [0, 1], as a (rows, columns) array."""
    a = _as_maps(layer, activation.detach().float())  # (1, C, rows, cols)
    g = _as_maps(layer, gradient.detach().float())
    weights = g.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * a).sum(dim=1))[0]
    cam = torch.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(cam.min()), float(cam.max())
    cam = (cam - low) / (high - low) if high - low > 1e-12 else torch.zeros_like(cam)
    return cam.cpu().numpy().astype(np.float32)


def _as_maps(layer: CamLayer, tensor: torch.Tensor) -> torch.Tensor:
    if layer.kind == "tokens":
        rows, cols = layer.grid
        patches = tensor[:, layer.prefix_tokens :, :]  # (1, rows·cols, C), row by row
        return patches.transpose(1, 2).reshape(tensor.shape[0], tensor.shape[2], rows, cols)
    return tensor.permute(0, 3, 1, 2) if layer.channels_last else tensor


def _class_names(loaded: LoadedModel, num_classes: int) -> list[str]:
    names = list(loaded.class_names or ())
    return [names[i] if i < len(names) else f"class {i}" for i in range(num_classes)]


def read_image(path: str) -> Image.Image:
    """Read an image file as :func:`explain_image` does: upright RGB, or a
    :class:`HeadswapError` that says why not (missing, a folder, not an image, damaged)."""
    if os.path.isdir(path):
        raise HeadswapError(f"{printable_path(path)} is a folder, not an image")
    if not os.path.exists(path):
        raise HeadswapError(f"no such image: {printable_path(path)}")
    try:
        return load_image(path)
    except DataError:
        raise
    except UnidentifiedImageError as error:
        raise HeadswapError(f"{printable_path(path)} is not an image Pillow can read") from error
    except OSError as error:
        if error.errno is not None:
            raise HeadswapError(f"cannot read {printable_path(path)}: {describe_os_error(error)}") from error
        raise HeadswapError(f"cannot decode {printable_path(path)} ({error})") from error
    except (SyntaxError, ValueError, EOFError, MemoryError) as error:
        raise HeadswapError(f"cannot decode {printable_path(path)} ({error})") from error


# --- geometry: where the model's view lies in the image ---------------------------------------


def crop_box(size: tuple[int, int], preprocessing: Preprocessing) -> tuple[float, float, float, float]:
    """The (left, top, right, bottom) of the image region the model's eval transform keeps
    (its extreme-aspect crop, short-side resize and centre crop, as torchvision computes them),
    in the image's own pixels. It may reach past the image where the centre crop pads."""
    width, height = size
    left0, top0, w1, h1 = 0.0, 0.0, float(width), float(height)
    short, long = min(width, height), max(width, height)
    if long > MAX_ASPECT_RATIO * short:  # data.CropExtremeAspect
        keep = MAX_ASPECT_RATIO * short
        if width > height:
            left0, w1 = float((width - keep) // 2), float(keep)
        else:
            top0, h1 = float((height - keep) // 2), float(keep)
    w1i, h1i = int(w1), int(h1)
    short, long = min(w1i, h1i), max(w1i, h1i)
    new_short, new_long = preprocessing.resize_size, int(preprocessing.resize_size * long / short)
    resized_w, resized_h = (new_short, new_long) if w1i <= h1i else (new_long, new_short)
    side = preprocessing.input_size
    crop_left = _crop_offset(resized_w, side)
    crop_top = _crop_offset(resized_h, side)
    sx, sy = w1 / resized_w, h1 / resized_h
    return (left0 + crop_left * sx, top0 + crop_top * sy, left0 + (crop_left + side) * sx, top0 + (crop_top + side) * sy)


def _crop_offset(length: int, crop: int) -> int:
    """torchvision's centre-crop offset; negative where it pads a short side."""
    if crop > length:
        return -((crop - length) // 2)
    return int(round((length - crop) / 2.0))


def _to_image(cam: np.ndarray, size: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    """``cam`` stretched over ``box`` (bilinear) on a zero canvas of ``size`` (width, height)."""
    width, height = size
    left, top, right, bottom = box
    box_w, box_h = max(int(round(right - left)), 1), max(int(round(bottom - top)), 1)
    stretched = F.interpolate(torch.from_numpy(cam)[None, None], size=(box_h, box_w), mode="bilinear",
                              align_corners=False)[0, 0].numpy()
    canvas = np.zeros((height, width), dtype=np.float32)
    x0, y0 = int(round(left)), int(round(top))
    ix0, iy0 = max(x0, 0), max(y0, 0)
    ix1, iy1 = min(x0 + box_w, width), min(y0 + box_h, height)
    if ix1 > ix0 and iy1 > iy0:
        canvas[iy0:iy1, ix0:ix1] = stretched[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    return np.clip(canvas, 0.0, 1.0)


# --- the picture ------------------------------------------------------------------------------

# A jet-like colour ramp: dark blue (nothing) through cyan, yellow to dark red (most).
_RAMP_STOPS = (0.0, 0.125, 0.375, 0.625, 0.875, 1.0)
_RAMP_COLOURS = ((0, 0, 128), (0, 0, 255), (0, 255, 255), (255, 255, 0), (255, 0, 0), (128, 0, 0))
_LUT = np.stack(
    [np.interp(np.linspace(0.0, 1.0, 256), _RAMP_STOPS, [c[i] for c in _RAMP_COLOURS]) for i in range(3)], axis=1
).round().astype(np.uint8)


def heatmap_colours(heatmap: np.ndarray) -> np.ndarray:
    """Values in [0, 1] → uint8 RGB (…×3) on a blue-to-red ramp."""
    indices = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return _LUT[indices]


def render_overlay(
    image: Image.Image,
    heatmap: np.ndarray,
    opacity: float = 0.5,
    crop_box: tuple[float, float, float, float] | None = None,
) -> Image.Image:
    """``image`` with ``heatmap`` blended over it at ``opacity`` (0: the image, 1: the map).

    A heatmap of another size (the full-resolution one over a thumbnail) is resized to the
    image; ``crop_box`` (in the heatmap's pixels), where given and smaller than the image,
    dims what the model never saw.
    """
    if not 0.0 <= float(opacity) <= 1.0:
        raise HeadswapError(f"the opacity is a number from 0 to 1, not {opacity:g}")
    rgb = image.convert("RGB")
    width, height = rgb.size
    heat = np.asarray(heatmap, dtype=np.float32)
    source_h, source_w = heat.shape
    if (source_w, source_h) != (width, height):
        heat = np.asarray(Image.fromarray(heat).resize((width, height), Image.Resampling.BILINEAR))
    pixels = np.asarray(rgb, dtype=np.float32)
    blended = (1.0 - opacity) * pixels + opacity * heatmap_colours(heat).astype(np.float32)
    if crop_box is not None:
        sx, sy = width / source_w, height / source_h
        left, top, right, bottom = (crop_box[0] * sx, crop_box[1] * sy, crop_box[2] * sx, crop_box[3] * sy)
        inside = np.zeros((height, width), dtype=bool)
        inside[max(int(round(top)), 0) : max(int(round(bottom)), 0), max(int(round(left)), 0) : max(int(round(right)), 0)] = True
        if not inside.all():
            blended[~inside] = pixels[~inside] * 0.45  # outside the model's view: dimmed, not coloured
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))


def write_overlay(
    path: str | os.PathLike[str], explanation: Explanation, image: Image.Image | None = None, opacity: float = 0.5
) -> None:
    """Write the image with its heatmap over it to ``path`` (the format from its extension:
    .png, .jpg, .webp, …), whole or not at all. ``image`` defaults to the explained file."""
    target = os.fspath(path)
    if os.path.isdir(target):
        raise HeadswapError(f"{printable_path(target)} is a folder; give a file name, e.g. "
                            f"{printable_path(os.path.join(target, 'heatmap.png'))}")
    extension = os.path.splitext(target)[1].lower()
    image_format = Image.registered_extensions().get(extension)
    if image_format is None or image_format not in Image.SAVE:
        raise HeadswapError(f"cannot tell the image format of {printable_path(target)}: end the name in .png, .jpg or .webp")
    if image is None:
        if explanation.image is None:
            raise HeadswapError("no image to draw the heatmap over")
        image = read_image(explanation.image)
    overlay = render_overlay(image, explanation.heatmap, opacity, explanation.crop_box)
    try:
        write_atomically(target, lambda temp: overlay.save(temp, format=image_format))
    except OSError as error:
        temp = os.path.basename(error.filename or "").startswith(f".{os.path.basename(target)}.")
        shown = OSError(error.errno, error.strerror) if temp else error
        raise HeadswapError(f"cannot write {printable_path(target)}: {describe_os_error(shown)}") from error
