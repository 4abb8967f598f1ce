"""`headswap explain`: a model folder with class names, an image, a heatmap PNG; one-line errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from headswap_gui.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> str:
    """timm's 0.36 M-parameter test EfficientNet (random weights, nothing downloaded) with a
    two-class head named cat and dog, written by `headswap swap`."""
    folder = tmp_path_factory.mktemp("model") / "cats-and-dogs"
    assert main(["swap", "timm:test_efficientnet", "--classes", "2", "--class-names", "cat,dog",
                 "-o", str(folder)]) == 0
    return str(folder)


@pytest.fixture
def photo(tmp_path) -> str:
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3)).astype(np.uint8)).save(path)
    return str(path)


def test_explain_writes_the_heatmap_over_the_image(capsys, model_folder, photo, tmp_path) -> None:
    out_file = tmp_path / "heat" / "photo-dog.png"
    code, out, err = run(capsys, "explain", model_folder, photo, "--class", "dog", "--opacity", "0.7",
                         "-o", str(out_file))
    assert code == 0, err
    assert f"{out_file}: heatmap for dog (" in out and "feature map of" in out
    with Image.open(out_file) as written:
        assert written.format == "PNG" and written.size == (120, 90)  # the image's own resolution
        assert np.asarray(written.convert("RGB")).std() > 0
    assert os.listdir(out_file.parent) == ["photo-dog.png"]  # written whole: no temp file beside it

    code, out, err = run(capsys, "explain", model_folder, photo, "-o", str(tmp_path / "predicted.png"))
    assert code == 0, err
    assert "the predicted class" in out
    code, out, err = run(capsys, "explain", model_folder, photo, "--class", "1", "-o", str(tmp_path / "i.png"))
    assert code == 0 and "heatmap for dog" in out  # an index, where no class is called "1"


@pytest.mark.parametrize("extra, message", [
    (["--class", "cow"], "'cow' is not one of the model's classes; choose one of: cat, dog"),
    (["--opacity", "1.5"], "--opacity is a number from 0 to 1"),
])
def test_bad_options_get_one_clear_line(capsys, model_folder, photo, tmp_path, extra, message) -> None:
    code, _, err = run(capsys, "explain", model_folder, photo, *extra, "-o", str(tmp_path / "x.png"))
    assert code == 2 and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_unreadable_images_and_outputs_get_one_clear_line(capsys, model_folder, photo, tmp_path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG but not really")
    for image, message in [(str(broken), "not an image"), (str(tmp_path / "missing.png"), "no such image"),
                           (str(tmp_path), "is a folder, not an image")]:
        code, _, err = run(capsys, "explain", model_folder, image, "-o", str(tmp_path / "x.png"))
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run(capsys, "explain", model_folder, photo, "-o", str(tmp_path / "heat.txt"))
    assert code == 2 and "end the name in .png" in err
