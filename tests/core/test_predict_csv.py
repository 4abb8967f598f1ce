"""Predictions as CSV: the columns, the "not sure" flag, error rows, and atomic writes."""

from __future__ import annotations

import csv
import os

import pytest
import torch
from PIL import Image
from torch import nn

from headswap_gui.core.errors import HeadswapError
from headswap_gui.core.predict import (
    NOT_SURE_BELOW,
    Prediction,
    is_not_sure,
    predict_images,
    write_predictions_csv,
)
from headswap_gui.core.preprocessing import Preprocessing
from headswap_gui.core.sources import LoadedModel

CLASSES = ("red", "green", "blue")


@pytest.fixture
def colour_model() -> LoadedModel:
    """Mean colour → class: a pure red image is clearly "red", a grey one is a three-way tie."""
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 3))
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([[10.0, -5, -5], [-5, 10, -5], [-5, -5, 10]]))
        model[2].bias.zero_()
    centred = Preprocessing(input_size=16, resize_size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return LoadedModel(model, "colours", "colours", centred, CLASSES)


@pytest.fixture
def images(tmp_path) -> dict[str, str]:
    paths = {}
    for name, colour in {"red": (255, 0, 0), "grey": (128, 128, 128)}.items():
        paths[name] = str(tmp_path / f"{name}.png")
        Image.new("RGB", (20, 20), colour).save(paths[name])
    paths["broken"] = str(tmp_path / "broken.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return paths


def _read(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_rows_carry_top_k_the_not_sure_flag_and_errors(colour_model, images, tmp_path):
    predictions = predict_images(colour_model, [images["red"], images["grey"], images["broken"]], top_k=2)
    target = tmp_path / "out" / "predictions.csv"  # a missing folder is made
    write_predictions_csv(target, predictions)

    with open(target, newline="", encoding="utf-8") as stream:
        header = next(csv.reader(stream))
    assert header == ["image", "label", "probability", "label_2", "probability_2", "not_sure", "error"]
    red, grey, broken = _read(target)
    assert red["image"] == images["red"] and red["label"] == "red" and float(red["probability"]) > 0.99
    assert red["label_2"] in CLASSES and red["not_sure"] == "false" and red["error"] == ""
    assert float(grey["probability"]) == pytest.approx(1 / 3, abs=0.01) and grey["not_sure"] == "true"
    assert broken["label"] == broken["probability"] == broken["not_sure"] == ""
    assert broken["error"].startswith("cannot decode the image")


def test_the_threshold_is_one_constant_and_can_be_overridden(colour_model, images, tmp_path):
    assert 0 < NOT_SURE_BELOW < 1
    assert is_not_sure(NOT_SURE_BELOW - 0.01) and not is_not_sure(NOT_SURE_BELOW)
    grey = predict_images(colour_model, [images["grey"]])[0]
    assert grey.not_sure() and not grey.not_sure(threshold=0.3)
    assert not Prediction("x.png", (), (), "unreadable").not_sure()  # an error is not a guess
    write_predictions_csv(tmp_path / "lenient.csv", [grey], not_sure_below=0.3)
    assert _read(tmp_path / "lenient.csv")[0]["not_sure"] == "false"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(colour_model, images, tmp_path):
    target = tmp_path / "out" / "predictions.csv"
    target.parent.mkdir()
    target.write_text("the previous results\n")
    good = predict_images(colour_model, [images["red"]])[0]
    damaged = Prediction("x.png", ("red",), ("not a number",))  # fails while its row is formatted
    with pytest.raises(ValueError):
        write_predictions_csv(target, [good, damaged])
    assert target.read_text() == "the previous results\n"
    assert os.listdir(target.parent) == ["predictions.csv"]


def test_unwritable_targets_are_explained(colour_model, images, tmp_path):
    predictions = predict_images(colour_model, [images["red"]])
    with pytest.raises(HeadswapError, match="is a folder; give a file name"):
        write_predictions_csv(tmp_path, predictions)
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    with pytest.raises(HeadswapError, match=r"cannot write .*notes\.txt.*predictions\.csv: ") as caught:
        write_predictions_csv(tmp_path / "notes.txt" / "predictions.csv", predictions)
    assert "Errno" not in str(caught.value)
