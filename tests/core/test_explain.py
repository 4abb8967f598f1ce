"""Explain a prediction: Grad-CAM heatmaps from a CNN's last feature map and a ViT's patch tokens.

Two small models are trained here, in seconds on a CPU, on real image files, and the heatmap
must peak where the evidence is:

* a CNN where the class is where a red square sits: top left, bottom right, or nowhere
  ("none": without it a model may well learn "bottom right" as "not top left", and its heatmap
  then rightly points at the empty corner);
* a timm ViT (patch tokens, average-pooled) where the class is the colour of a square in a
  random corner, so the map must follow the square around the patch grid (a transposed or
  shifted grid fails on the top-right and bottom-left corners). A ViT trained from scratch
  takes hundreds of steps to learn position (the corner task), too slow and too seed-dependent
  for a test. A class-token ViT trained for seconds learns the colours (100 % after 120 steps)
  but its Grad-CAM, taken where the patches reach the class token (the last attention's input),
  found the square in only 4, 0 and 0 of 12 images over three seeds: its first block already
  spreads "there is red" over all tokens. That path is tested on timm's ``test_vit`` for its
  layer, grid and shapes.

Also: the model is left exactly as it was (mode, weights, no ``.grad``, no hooks), the map lines
up with the image through the model's resize and centre crop, and the errors a user can cause
read as sentences.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torch import nn

from headswap_gui.core.data import build_transform
from headswap_gui.core.errors import HeadswapError
from headswap_gui.core.explain import (
    CamLayer,
    Explanation,
    NoSpatialLayerError,
    crop_box,
    explain_image,
    find_cam_layers,
    heatmap_colours,
    render_overlay,
    write_overlay,
)
from headswap_gui.core.images import load_image
from headswap_gui.core.preprocessing import Preprocessing
from headswap_gui.core.sources import LoadedModel

SIZE, SQUARE = 64, 16
CLASSES = ("top-left", "bottom-right", "none")
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
PREPROCESSING = Preprocessing(input_size=SIZE, resize_size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


COLOURS = {"red": (255, 0, 0), "blue": (0, 0, 255), "green": (0, 255, 0)}


def corner_image(
    rng: np.random.Generator, where: str, size: tuple[int, int] = (SIZE, SIZE), left: int = 0, colour: str = "red"
) -> Image.Image:
    """Noise with a square in the corner ``where`` names (several, separated by spaces; "none":
    no square); ``left`` shifts the squares right, for images wider than the model's view."""
    width, height = size
    pixels = rng.integers(0, 180, (height, width, 3)).astype(np.uint8)
    for corner in where.replace("none", "").split():
        vertical, horizontal = corner.split("-")
        ys = slice(0, SQUARE) if vertical == "top" else slice(height - SQUARE, height)
        xs = slice(left, left + SQUARE) if horizontal == "left" else slice(left + SIZE - SQUARE, left + SIZE)
        pixels[ys, xs] = COLOURS[colour]
    return Image.fromarray(pixels)


@contextlib.contextmanager
def one_thread():
    """One CPU thread while training: deterministic, and no oversubscription on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def write_folder(folder, classes: tuple[str, ...], draw, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` PNG files in one subfolder per class, read back as the model's eval
    transform reads them; ``draw(rng, name)`` makes one image."""
    rng = np.random.default_rng(0)
    tensors, labels = [], []
    transform = build_transform(PREPROCESSING)
    for label, name in enumerate(classes):
        (folder / name).mkdir()
        for i in range(per_class):
            path = folder / name / f"{i}.png"
            draw(rng, name).save(path)
            tensors.append(transform(load_image(path)))
            labels.append(label)
    return torch.stack(tensors), torch.tensor(labels)


@pytest.fixture(scope="module")
def corner_files(tmp_path_factory) -> tuple[torch.Tensor, torch.Tensor]:
    """The class is the corner of the red square."""
    return write_folder(tmp_path_factory.mktemp("corners"), CLASSES, corner_image, per_class=32)


@pytest.fixture(scope="module")
def colour_files(tmp_path_factory) -> tuple[torch.Tensor, torch.Tensor]:
    """The class is the colour of a square in a random corner."""

    def draw(rng: np.random.Generator, colour: str) -> Image.Image:
        return corner_image(rng, CORNERS[int(rng.integers(4))], colour=colour)

    return write_folder(tmp_path_factory.mktemp("colours"), tuple(COLOURS), draw, per_class=32)


def train(
    model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], steps: int, lr: float, classes: tuple[str, ...] = CLASSES
) -> LoadedModel:
    images, labels = data
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    with one_thread():
        for _ in range(steps):
            batch = torch.randint(0, len(images), (16,), generator=generator)
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    for parameter in model.parameters():
        parameter.grad = None
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.95, f"the test model did not learn its task ({accuracy:.0%})"
    return LoadedModel(model, "squares", "squares", PREPROCESSING, classes)


@pytest.fixture(scope="module")
def cnn(corner_files) -> LoadedModel:
    """Three padded convolutions, global average pooling, a linear head: position is only
    learnable from the borders, as in any real CNN."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, len(CLASSES)),
    )
    return train(model, corner_files, steps=60, lr=3e-3)


@pytest.fixture(scope="module")
def vit(colour_files) -> LoadedModel:
    """A two-block timm ViT (vit_tiny's design at 64 px, narrower) on a 4×4 grid of 16-pixel
    patches, with a class token and average pooling over the patch tokens."""
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=SIZE, patch_size=16, depth=2, embed_dim=64,
        num_heads=2, num_classes=len(COLOURS), global_pool="avg",
    )
    return train(model, colour_files, steps=60, lr=1e-3, classes=tuple(COLOURS))


def quadrant_of_peak(heatmap: np.ndarray) -> str:
    y, x = np.unravel_index(int(heatmap.argmax()), heatmap.shape)
    rows, cols = heatmap.shape
    return f"{'top' if y < rows / 2 else 'bottom'}-{'left' if x < cols / 2 else 'right'}"


def quadrant_mass(heatmap: np.ndarray, where: str) -> float:
    rows, cols = heatmap.shape
    ys = slice(0, rows // 2) if where.startswith("top") else slice(rows // 2, rows)
    xs = slice(0, cols // 2) if where.endswith("left") else slice(cols // 2, cols)
    return float(heatmap[ys, xs].sum() / max(heatmap.sum(), 1e-9))


def check_peaks(loaded: LoadedModel, layers: tuple[CamLayer, ...], path, corner: str, label: str) -> Explanation:
    explanation = explain_image(loaded, path, layers=layers)
    assert explanation.predicted_label == label and explanation.label == label
    assert explanation.probability > 0.5 and explanation.image == str(path)
    assert explanation.heatmap.shape == (SIZE, SIZE) and explanation.heatmap.dtype == np.float32
    assert np.isfinite(explanation.heatmap).all() and 0.9 < explanation.heatmap.max() <= 1.0
    assert quadrant_of_peak(explanation.heatmap) == corner
    assert quadrant_mass(explanation.heatmap, corner) > 0.5
    return explanation


def test_the_cnn_heatmap_peaks_in_the_corner_of_the_class(cnn, tmp_path) -> None:
    layers = find_cam_layers(cnn.model, SIZE)  # once per model, as the window does for a list of images
    rng = np.random.default_rng(123)
    for corner in CLASSES[:2]:
        for i in range(3):
            path = tmp_path / f"{corner}-{i}.png"
            corner_image(rng, corner).save(path)
            explanation = check_peaks(cnn, layers, path, corner, corner)
    assert explanation.kind == "feature map" and explanation.layer == "5"  # the last ReLU before the pooling
    assert explanation.cam.shape == (16, 16)


def test_the_vit_heatmap_follows_the_square_over_the_patch_grid(vit, tmp_path) -> None:
    layers = find_cam_layers(vit.model, SIZE)
    rng = np.random.default_rng(123)
    for colour in COLOURS:
        for corner in CORNERS:
            path = tmp_path / f"{colour}-{corner}.png"
            corner_image(rng, corner, colour=colour).save(path)
            explanation = check_peaks(vit, layers, path, corner, colour)
    assert explanation.kind == "tokens" and explanation.layer == "norm"  # the final norm: pooled token by token
    assert explanation.cam.shape == (4, 4)  # the patch grid, the class token dropped


def test_any_class_can_be_explained_by_name_or_index(cnn) -> None:
    both = corner_image(np.random.default_rng(5), "top-left bottom-right")
    for target in ("top-left", 0):
        assert quadrant_of_peak(explain_image(cnn, both, target).heatmap) == "top-left"
    explanation = explain_image(cnn, both, "bottom-right")
    assert explanation.label == "bottom-right" and explanation.class_index == 1
    assert quadrant_of_peak(explanation.heatmap) == "bottom-right"
    assert "bottom-right" in explanation.describe()


def test_the_model_is_left_as_it_was(cnn, vit) -> None:
    image = corner_image(np.random.default_rng(9), "top-left", colour="blue")
    for loaded in (cnn, vit):
        model = loaded.model
        model.train()  # a model mid-training: explain must not leave it in eval mode
        before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
        marker = torch.full_like(next(model.parameters()), 7.0)
        next(model.parameters()).grad = marker.clone()  # a gradient someone else is accumulating
        explain_image(loaded, image)
        with pytest.raises(HeadswapError):
            explain_image(loaded, image, "no such class")  # fails after the forward pass: hooks still go
        assert all(module.training for module in model.modules())
        after = model.state_dict()
        assert all(torch.equal(before[name], after[name]) for name in before)
        parameters = list(model.parameters())
        assert torch.equal(parameters[0].grad, marker) and all(p.grad is None for p in parameters[1:])
        assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())
        model.eval()
        parameters[0].grad = None


def test_explain_works_under_inference_mode(cnn) -> None:
    """A worker thread may call it inside ``torch.inference_mode()``; gradients are still taken."""
    with torch.inference_mode():
        explanation = explain_image(cnn, corner_image(np.random.default_rng(1), "bottom-right"))
    assert quadrant_of_peak(explanation.heatmap) == "bottom-right"


def test_the_heatmap_lines_up_with_the_image_through_the_centre_crop(cnn, tmp_path) -> None:
    """A 96×64 image: the model sees its centre 64×64; the map covers that part and is zero outside."""
    path = tmp_path / "wide.png"
    corner_image(np.random.default_rng(3), "top-left", size=(96, 64), left=16).save(path)
    explanation = explain_image(cnn, path)
    assert explanation.image_size == (96, 64) and explanation.heatmap.shape == (64, 96)
    assert explanation.crop_box == (16.0, 0.0, 80.0, 64.0)
    assert not explanation.heatmap[:, :16].any() and not explanation.heatmap[:, 80:].any()
    inside = explanation.heatmap[:, 16:80]
    assert explanation.label == "top-left" and quadrant_of_peak(inside) == "top-left"


@pytest.mark.parametrize("size, preprocessing", [
    ((100, 70), Preprocessing(input_size=56, resize_size=64)),
    ((50, 120), Preprocessing(input_size=32, resize_size=40)),
    ((30, 20), Preprocessing(input_size=32, resize_size=32)),  # the crop pads the short side
])
def test_the_crop_box_is_what_the_transform_keeps(size, preprocessing) -> None:
    """Cutting the crop box out of the image and resizing it gives the model's input."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width]
    image = Image.fromarray(np.stack([xs * 255 // width, ys * 255 // height, np.zeros_like(xs)], -1).astype(np.uint8))
    transformed = build_transform(preprocessing)(image)
    left, top, right, bottom = crop_box(size, preprocessing)
    side = preprocessing.input_size
    # Where the model's input pixel centres lie in the image, by the box; compare red and green ramps.
    u = left + (np.arange(side) + 0.5) * (right - left) / side
    v = top + (np.arange(side) + 0.5) * (bottom - top) / side
    inside_x, inside_y = (u > 1) & (u < width - 1), (v > 1) & (v < height - 1)
    mean, std = np.array(preprocessing.mean)[:, None, None], np.array(preprocessing.std)[:, None, None]
    pixels = transformed.numpy() * std + mean  # back to 0..1
    red = pixels[0][np.ix_(inside_y, inside_x)]
    green = pixels[1][np.ix_(inside_y, inside_x)]
    expected_red = np.broadcast_to((u[inside_x] / width)[None, :], red.shape)
    expected_green = np.broadcast_to((v[inside_y] / height)[:, None], green.shape)
    assert np.abs(red - expected_red).max() < 0.04 and np.abs(green - expected_green).max() < 0.04


def test_layers_are_found_by_tracing_whatever_their_names() -> None:
    class ChannelsLast(nn.Module):
        """A Swin-like trunk: feature maps as B×H×W×C, pooled over H and W."""

        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 8, stride=8)  # 8 channels on a 4×4 grid: no confusing C with H
            self.mix = nn.Linear(8, 8)
            self.head = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.mix(self.stem(x).permute(0, 2, 3, 1)).mean((1, 2)))

    layers = find_cam_layers(ChannelsLast(), 32)
    assert [(layer.path, layer.kind, layer.channels_last) for layer in layers] == [
        ("mix", "feature map", True), ("stem", "feature map", False)]
    model = timm.create_model("test_vit", pretrained=False)  # a class token; patches of a 10×10 grid at 160 px
    layers = find_cam_layers(model, 160)
    latest = layers[0]
    assert (latest.path, latest.kind, latest.prefix_tokens, latest.grid) == ("norm", "tokens", 1, (10, 10))
    assert not any(".attn." in layer.path and layer.kind != "tokens" for layer in layers)  # no B×heads×N×d
    assert not any(layer.path.endswith(("qkv", "fc1", "act")) for layer in layers)  # wider than the stream
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (160, 200, 3)).astype(np.uint8))
    explanation = explain_image(LoadedModel(model, "t", "t", Preprocessing(input_size=160, resize_size=160)), noise)
    # It reads its class token after the final norm, which (like the last MLP) works token by
    # token: the patches' gradient is exactly zero there. The last attention's input is where
    # the patches reach the class token.
    assert explanation.layer == f"blocks.{len(model.blocks) - 1}.norm1" and explanation.kind == "tokens"
    assert explanation.cam.shape == (10, 10) and explanation.heatmap.shape == (160, 200)
    assert explanation.label.startswith("class ") and np.isfinite(explanation.heatmap).all() and not explanation.empty


def test_user_errors_read_as_sentences(cnn, tmp_path) -> None:
    image = corner_image(np.random.default_rng(2), "none")
    with pytest.raises(HeadswapError, match=r"'elephant' is not one of the model's classes; choose one of: "
                                            r"top-left, bottom-right, none$"):
        explain_image(cnn, image, "elephant")
    with pytest.raises(HeadswapError, match="class index 7 is out of range"):
        explain_image(cnn, image, 7)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(HeadswapError, match="not an image"):
        explain_image(cnn, broken)
    with pytest.raises(HeadswapError, match="no such image"):
        explain_image(cnn, tmp_path / "missing.png")
    pixels_mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 8), nn.ReLU(), nn.Linear(8, 2))
    flat = LoadedModel(pixels_mlp, "mlp", "mlp", Preprocessing(input_size=16, resize_size=16), ("a", "b"))
    with pytest.raises(NoSpatialLayerError, match="no layer with a spatial output"):
        explain_image(flat, image)


def test_the_overlay_blends_the_colour_ramp_over_the_image() -> None:
    image = Image.new("RGB", (40, 20), (200, 200, 200))
    heat = np.zeros((20, 40), dtype=np.float32)
    heat[:, 20:] = 1.0
    assert np.array_equal(np.asarray(render_overlay(image, heat, 0.0)), np.asarray(image))
    full = np.asarray(render_overlay(image, heat, 1.0))
    assert tuple(full[0, 0]) == tuple(heatmap_colours(np.float32(0.0))) == (0, 0, 128)  # cold: dark blue
    assert tuple(full[0, 39]) == (128, 0, 0)  # hot: dark red
    half = np.asarray(render_overlay(image, heat, 0.5))
    assert tuple(half[0, 39]) == (164, 100, 100)
    small = render_overlay(image.resize((20, 10)), heat, 1.0)  # the map is resized to a thumbnail
    assert small.size == (20, 10) and tuple(np.asarray(small)[5, 19]) == (128, 0, 0)
    dimmed = np.asarray(render_overlay(image, heat, 0.5, crop_box=(10.0, 0.0, 40.0, 20.0)))
    assert tuple(dimmed[0, 0]) == (90, 90, 90)  # outside what the model saw: dimmed, not coloured
    with pytest.raises(HeadswapError, match="opacity"):
        render_overlay(image, heat, 1.5)


def test_write_overlay_writes_the_file_whole(cnn, tmp_path) -> None:
    path = tmp_path / "photo.png"
    corner_image(np.random.default_rng(4), "bottom-right", size=(80, 64), left=8).save(path)
    explanation = explain_image(cnn, path)
    target = tmp_path / "out" / "heat.png"
    write_overlay(target, explanation, opacity=0.6)
    with Image.open(target) as written:
        assert written.format == "PNG" and written.size == (80, 64)
    write_overlay(tmp_path / "heat.jpg", explanation)
    assert Image.open(tmp_path / "heat.jpg").format == "JPEG"
    with pytest.raises(HeadswapError, match="is a folder"):
        write_overlay(tmp_path, explanation)
    with pytest.raises(HeadswapError, match="image format"):
        write_overlay(tmp_path / "heat.txt", explanation)
    assert sorted(os.listdir(tmp_path / "out")) == ["heat.png"]  # no temp file left behind
