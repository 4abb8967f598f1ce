"""load_image: every mode Pillow can hand back becomes the RGB the model should see."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from headswap_gui.core.errors import DataError, HeadswapError
from headswap_gui.core.images import (
    IMAGE_EXTENSIONS,
    ImageTooLargeError,
    is_image_file,
    load_image,
    to_rgb,
    verify_image,
)

WHITE = (255, 255, 255)


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


def test_extensions_cover_common_formats():
    assert IMAGE_EXTENSIONS == {
        ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"
    }
    assert is_image_file("a/B.JPG") and is_image_file("x.tiff")
    assert not is_image_file("notes.txt") and not is_image_file("png")


def test_grayscale_becomes_equal_channels(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(np.array([[0, 100], [200, 255]], dtype=np.uint8)).save(path)
    rgb = pixels(load_image(path))
    assert rgb.shape == (2, 2, 3)
    assert (rgb[..., 0] == [[0, 100], [200, 255]]).all()
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def test_rgba_transparent_pixels_become_white(tmp_path):
    path = tmp_path / "alpha.png"
    image = Image.new("RGBA", (3, 1))
    image.putdata([(0, 0, 0, 0), (255, 0, 0, 255), (0, 0, 0, 128)])
    image.save(path)
    rgb = pixels(load_image(path))
    assert tuple(rgb[0, 0]) == WHITE
    assert tuple(rgb[0, 1]) == (255, 0, 0)
    assert all(abs(int(v) - 127) <= 1 for v in rgb[0, 2])  # half black over white


def test_la_transparent_pixels_become_white(tmp_path):
    path = tmp_path / "la.png"
    Image.new("LA", (2, 2), (0, 0)).save(path)
    assert (pixels(load_image(path)) == 255).all()


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (2, 1), 0)
    image.putpalette([0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    image.putpixel((1, 0), 1)
    for name in ("palette.png", "palette.gif"):
        image.save(tmp_path / name, transparency=0)
        rgb = pixels(load_image(tmp_path / name))
        assert tuple(rgb[0, 0]) == WHITE  # index 0 is transparent, not green
        assert tuple(rgb[0, 1]) == (0, 0, 255)


def test_cmyk_jpeg_converts_to_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)
    r, g, b = pixels(load_image(path))[8, 8]
    assert r > 230 and g < 25 and b < 25


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_gradient_keeps_its_range(tmp_path, suffix):
    path = tmp_path / f"gradient16{suffix}"
    gradient = np.linspace(0, 65535, 256).round().astype(np.uint16)[None, :].repeat(4, axis=0)
    Image.fromarray(gradient).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    grey = pixels(load_image(path))[..., 0]
    assert grey.min() == 0 and grey.max() == 255
    assert (np.diff(grey[0].astype(int)) >= 0).all()
    assert abs(int(grey[0, 128]) - 128) <= 1  # scaled, not clipped to white


@pytest.mark.parametrize("dtype", ["<u2", ">u2", "<i4"])
def test_16_bit_modes_in_memory_scale_by_257(dtype):
    values = np.array([[0, 257, 32896, 65535]], dtype=dtype)
    image = Image.fromarray(values.astype(np.int32) if dtype == "<i4" else values)
    assert image.mode in {"I;16", "I;16B", "I"}
    assert list(pixels(to_rgb(image))[0, :, 0]) == [0, 1, 128, 255]


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    stored.save(path, exif=exif, quality=95)

    upright = load_image(path)
    assert upright.size == (20, 40)
    top, bottom = pixels(upright)[5, 10], pixels(upright)[35, 10]
    assert top[0] > 200 and top[2] < 50  # the stored left (red) is now on top
    assert bottom[2] > 200 and bottom[0] < 50
    assert verify_image(path) == (20, 40)


@pytest.mark.parametrize("side", [40, 100])  # between 1x and 2x the limit, and above 2x
def test_decompression_bomb_is_refused(tmp_path, monkeypatch, side):
    path = tmp_path / "bomb.png"
    Image.new("L", (side, side)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):
        load_image(path)
    with pytest.raises(ImageTooLargeError):
        verify_image(path)
    assert issubclass(ImageTooLargeError, DataError) and issubclass(DataError, HeadswapError)


def test_loaded_image_outlives_its_file(tmp_path):
    path = tmp_path / "gone.bmp"
    Image.new("RGB", (5, 4), (1, 2, 3)).save(path)
    image = load_image(path)
    path.unlink()
    assert image.size == (5, 4) and tuple(pixels(image)[0, 0]) == (1, 2, 3)


def test_truncated_file_fails_to_verify(tmp_path):
    path = tmp_path / "cut.png"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match="truncated"):
        verify_image(path)
