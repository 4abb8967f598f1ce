"""The bundled digits demo folder: complete, correct, reused, and never clobbering user files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from headswap_gui.core.demo_data import DEFAULT_DEMO_DATA_DIR, write_digits_dataset
from headswap_gui.core.errors import DataError


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("demo") / "digits"
    write_digits_dataset(directory)
    return directory


def inodes(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_ino for p in directory.rglob("*.png")}


def test_digits_folder_is_complete(digits_dir):
    info = write_digits_dataset(digits_dir)
    digits = load_digits()
    assert info.class_names == tuple(str(d) for d in range(10))
    assert len(info.samples) == 1797 and info.skipped == ()
    assert info.counts == tuple(np.bincount(digits.target))
    assert info.size_summary.max_width == 8 and info.size_summary.max_height == 8


def test_pixels_are_scaled_to_8_bit(digits_dir):
    digits = load_digits()
    with Image.open(digits_dir / str(digits.target[5]) / "digit_0005.png") as image:
        assert image.mode == "L" and image.size == (8, 8)
        stored = np.asarray(image)
    assert np.array_equal(stored, np.rint(digits.images[5] * 255 / 16).astype(np.uint8))
    assert stored.max() == 255  # 16 -> 255


def test_complete_folder_is_reused_and_partial_one_rewritten(digits_dir):
    before = inodes(digits_dir)
    write_digits_dataset(digits_dir)
    assert inodes(digits_dir) == before  # nothing rewritten

    (digits_dir / "3" / "digit_0003.png").unlink()
    assert len(write_digits_dataset(digits_dir).samples) == 1797
    assert (digits_dir / "3" / "digit_0003.png").is_file()
    assert not [p for p in digits_dir.parent.iterdir() if p.name.startswith(".")]


def test_folder_with_other_files_is_not_replaced(tmp_path):
    directory = tmp_path / "mine"
    directory.mkdir()
    (directory / "thesis.txt").write_text("precious")
    with pytest.raises(DataError, match="not the digits demo set"):
        write_digits_dataset(directory)
    assert (directory / "thesis.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_default_location():
    assert DEFAULT_DEMO_DATA_DIR.name == "demo-digits"
    assert "headswap" in DEFAULT_DEMO_DATA_DIR.parts


def test_reusing_the_folder_never_imports_scikit_learn(digits_dir):
    """scikit-learn costs seconds to import; a launch that finds the set in place skips it."""
    import subprocess
    import sys

    code = (
        "import sys; from headswap_gui.core.demo_data import write_digits_dataset; "
        f"info = write_digits_dataset({str(digits_dir)!r}); "
        "print(len(info.samples), 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1797", "False"]
