"""headswap embed RUN DATA_DIR -o OUT.csv|OUT.png on a real folder with the demo model."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from headswap_gui.cli import main

COLOURS = {"blue": (30, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("colours") / "data"
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for index in range(8):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}_{index}.png")
    return root


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_writes_one_row_per_image(folder, tmp_path, capsys, method):
    out = tmp_path / "map.csv"
    assert main(["embed", "demo", str(folder), "-o", str(out), "--method", method]) == 0
    with open(out, encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 24 and {row["label"] for row in rows} == set(COLOURS)
    assert all(row["path"].startswith(str(folder)) and row["label"] in row["path"] for row in rows)
    assert all(row["predicted"] == "" and row["misclassified"] == "no" for row in rows)  # ImageNet classes
    points = np.array([(float(row["x"]), float(row["y"])) for row in rows])
    assert np.isfinite(points).all() and points.std(axis=0).min() > 0
    err = capsys.readouterr().err
    assert f"mapping 24 images in 3 classes by {'t-SNE' if method == 'tsne' else 'PCA'}" in err
    assert f"wrote {out}" in err


def test_writes_a_picture(folder, tmp_path):
    out = tmp_path / "map.png"
    assert main(["embed", "demo", str(folder), "-o", str(out), "--method", "pca"]) == 0
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.width > picture.height >= 600


@pytest.mark.parametrize(
    "output, message",
    [
        ("map.txt", "end the name in .csv or .png"),
        ("taken", "is a folder; give a file name, e.g."),  # refused before the work, not after
    ],
)
def test_clear_one_line_errors(folder, tmp_path, capsys, output, message):
    (tmp_path / "taken").mkdir()
    capsys.readouterr()
    assert main(["embed", "demo", str(folder), "-o", str(tmp_path / output)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("headswap: error: ") and message in err and "\n" not in err


def test_a_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["embed", "demo", str(tmp_path / "missing"), "-o", str(tmp_path / "map.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("headswap: error: ") and "Image folder not found" in err and "\n" not in err
