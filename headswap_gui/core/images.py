"""Open any image file the way the model should see it: upright, RGB, 8 bits per channel.

Training, feature caching and prediction all read images through :func:`load_image`, so a
photo taken sideways, a 16-bit scan or a transparent PNG is interpreted the same way
everywhere. Pillow's own conversions get several of these wrong for this purpose (16-bit
grey is clipped to white, transparent pixels become black), hence the explicit rules here.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from headswap_gui.core.errors import DataError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
"""Lower-case file extensions treated as images when scanning a folder."""

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_BYTES_PER_SAMPLE = {"I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "I": 4, "F": 4}
"""Decoding budget weights: a 16-bit image costs twice the memory of an 8-bit one of the
same size, so Pillow's pixel limit counts its pixels twice."""
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_EXIF_ORIENTATION = 0x0112
_EXIF_QUARTER_TURNS = frozenset({5, 6, 7, 8})
_VERIFY_DRAFT_SIZE = 64


class ImageTooLargeError(DataError):
    """The image has more pixels than Pillow's decompression-bomb limit."""


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether the file name has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open and fully decode ``path`` in its own mode, refusing decompression bombs.

    The whole file is decoded, not just the header, so a truncated or corrupt file fails
    here with Pillow's ``OSError``/``SyntaxError`` rather than later in a training worker.
    """
    image = _open_unloaded(path)
    try:
        image.load()
    except BaseException:
        image.close()
        raise
    return image


def verify_image(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Decode ``path`` to prove it is readable; return its upright ``(width, height)``.

    Raises like :func:`open_image`. JPEGs are decoded at reduced scale (Pillow's ``draft``),
    which still reads every byte of the file, so damage is found at a fraction of the cost
    of a full decode; that keeps scanning a folder of large photos quick.
    """
    with _open_unloaded(path) as image:
        width, height = image.size
        if image.getexif().get(_EXIF_ORIENTATION, 1) in _EXIF_QUARTER_TURNS:
            width, height = height, width
        image.draft("RGB", (_VERIFY_DRAFT_SIZE, _VERIFY_DRAFT_SIZE))
        image.load()
    return width, height


def _open_unloaded(path: str | os.PathLike[str]) -> Image.Image:
    """``Image.open`` that raises :class:`ImageTooLargeError` above the pixel limit.

    Pillow itself only warns between one and two times ``PIL.Image.MAX_IMAGE_PIXELS``; a
    warning is easy to miss in a scan of thousands of files, and such an image would
    exhaust memory in a batch anyway, so the warning counts as an error here.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_large(path, str(exc)) from exc
    limit = Image.MAX_IMAGE_PIXELS
    width, height = image.size
    weight = _BYTES_PER_SAMPLE.get(image.mode, 1)
    if limit is not None and width * height * weight > limit:
        image.close()  # catch_warnings is not thread-safe, so do not rely on it alone
        depth = f" at {8 * weight} bits per sample" if weight > 1 else ""
        raise _too_large(path, f"{width}x{height} pixels{depth} exceeds the limit of {limit // weight} pixels")
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a decoded image of any mode to upright 8-bit RGB.

    EXIF orientation is applied, transparency is composited on white (a transparent
    background is "nothing", which white represents better than Pillow's black), and
    16-bit images are scaled by 1/257 so their full range maps onto 0..255.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's own I;16 -> L conversion clips at 255 instead of scaling.
        # Integer arithmetic: a float64 copy would cost 8 bytes per pixel on images near the limit.
        values = np.asarray(image).astype(np.int64 if image.mode == "I" else np.uint32, copy=False)
        scaled = np.clip((values + 128) // 257, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "F":
        return image.convert("L").convert("RGB")
    return image.convert("RGB")


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Read ``path`` as an upright 8-bit RGB image (see :func:`open_image`, :func:`to_rgb`)."""
    with open_image(path) as image:
        return to_rgb(image)  # always a new image, independent of the closed file


def _too_large(path: str | os.PathLike[str], detail: str) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"{os.fspath(path)} is too large to open safely ({detail}). "
        "It may be a decompression bomb; downscale it or remove it from the folder."
    )
