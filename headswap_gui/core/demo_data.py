"""A ready-made image folder for trying the tool offline: scikit-learn's handwritten digits.

``sklearn.datasets.load_digits`` ships inside the scikit-learn package (no download), so the
demo, the tutorial and the end-to-end tests always have a real 10-class folder to train on.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from headswap_gui.core.data import DatasetInfo, scan_image_folder
from headswap_gui.core.errors import DataError

try:
    import platformdirs
except ImportError:  # a declared dependency, but the engine should not need it to import
    platformdirs = None

DEFAULT_DEMO_DATA_DIR = (
    Path(platformdirs.user_data_dir("headswap")) / "demo-digits"
    if platformdirs is not None
    else Path.home() / ".headswap" / "demo-digits"
)
"""Where the window and ``headswap demo`` put the digits folder unless told otherwise."""

_FILE_PATTERN = "digit_{index:04d}.png"
DIGIT_COUNT = 1797  # scikit-learn's digits: 8×8 images, classes 0–9


def write_digits_dataset(directory: str | os.PathLike[str] = DEFAULT_DEMO_DATA_DIR) -> DatasetInfo:
    """Write the 1,797 8×8 digits as grey PNGs in class folders "0".."9"; return the scan.

    Pixel values 0..16 are scaled to 0..255. A folder that already holds the complete set is
    reused. Otherwise the set is written to a temporary folder beside ``directory`` and
    renamed into place, so an interrupted write never leaves a half-filled folder that
    looks usable. An existing folder is only replaced when it holds nothing but (part of)
    this dataset; anything else raises :class:`DataError` rather than deleting user files.
    """
    target = Path(directory).expanduser().absolute()
    if not _holds_the_whole_set(_listing(target)):
        from sklearn.datasets import load_digits  # a 1–3 s import: only when the set is written

        digits = load_digits()
        expected = _expected_files(digits.target)
        if _listing(target) != expected:
            _write_atomically(target, digits.images, digits.target, expected)
    return scan_image_folder(target)


def _holds_the_whole_set(listing: dict[str, set[str]] | None) -> bool:
    """Whether a folder holds every digit file once, in the ten class folders, and nothing
    else: what a finished (atomically renamed) write leaves. Checked without the labels, so a
    launch that reuses the folder never imports scikit-learn; a file a user moved to another
    class is theirs to keep."""
    if listing is None or set(listing) != {str(label) for label in range(10)}:
        return False
    names = [name for files in listing.values() for name in files]
    return len(names) == DIGIT_COUNT and set(names) == {_FILE_PATTERN.format(index=i) for i in range(DIGIT_COUNT)}


def _expected_files(labels: np.ndarray) -> dict[str, set[str]]:
    files: dict[str, set[str]] = {str(label): set() for label in range(10)}
    for index, label in enumerate(labels):
        files[str(label)].add(_FILE_PATTERN.format(index=index))
    return files


def _listing(target: Path) -> dict[str, set[str]] | None:
    """Class folder -> file names currently in ``target``; ``None`` if it does not exist.

    Files directly in ``target`` are listed under "".
    """
    if not target.is_dir():
        return None
    listing: dict[str, set[str]] = {}
    for entry in target.iterdir():
        if entry.is_dir():
            listing[entry.name] = {child.name for child in entry.iterdir()}
        else:
            listing.setdefault("", set()).add(entry.name)
    return listing


def _write_atomically(
    target: Path, images: np.ndarray, labels: np.ndarray, expected: dict[str, set[str]]
) -> None:
    current = _listing(target)
    if current is not None and not _is_partial_copy(current, expected):
        raise DataError(
            f"{target} already exists and holds files that are not the digits demo set. "
            "Choose an empty or new folder for the demo data."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for name in expected:
            (staging / name).mkdir()
        pixels = np.rint(images * (255.0 / 16.0)).astype(np.uint8)
        for index, (image, label) in enumerate(zip(pixels, labels)):
            path = staging / str(label) / _FILE_PATTERN.format(index=index)
            Image.fromarray(image).save(path)
        if current is not None:
            shutil.rmtree(target)
        try:
            staging.rename(target)
        except OSError:
            if _listing(target) != expected:  # not a concurrent writer that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _is_partial_copy(current: dict[str, set[str]], expected: dict[str, set[str]]) -> bool:
    """Whether every entry of ``current`` is a folder or file this dataset would write."""
    return all(name in expected and files <= expected[name] for name, files in current.items())
