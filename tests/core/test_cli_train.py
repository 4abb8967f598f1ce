"""headswap train → predict → export on a real (tiny) image folder."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from headswap_gui.cli import main

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir()
        for index in range(12):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    (root / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


@pytest.fixture(scope="module")
def trained_run(colour_folder, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    code = main(["train", "torchvision:resnet18", str(colour_folder), "-o", str(run), "--epochs", "3",
                 "--image-size", "32", "--batch-size", "8", "--freeze", "full", "--lr", "3e-3"])
    assert code == 0
    return run


def test_train_writes_a_complete_run(trained_run):
    metadata = json.loads((trained_run / "headswap.json").read_text())
    assert metadata["class_names"] == ["blue", "green", "red"]
    assert len(metadata["epochs"]) == 3 and metadata["finished"] == "completed"
    assert (trained_run / metadata["weights_file"]).is_file() and (trained_run / "metrics.csv").is_file()
    assert len((trained_run / "metrics.csv").read_text().strip().splitlines()) == 4


def test_predict_names_the_classes(trained_run, colour_folder, capsys):
    capsys.readouterr()
    assert main(["predict", str(trained_run), str(colour_folder / "green"), "--json", "--top-k", "2"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert len(predictions) == 12
    assert all(len(p["top"]) == 2 and p["top"][0]["label"] in COLOURS for p in predictions)
    correct = sum(p["top"][0]["label"] == "green" for p in predictions)
    assert correct >= 9, f"only {correct}/12 green images recognised"


def test_predict_writes_a_csv_with_not_sure_and_error_rows(trained_run, colour_folder, tmp_path, capsys):
    capsys.readouterr()
    target = tmp_path / "predictions.csv"
    code = main(["predict", str(trained_run), str(colour_folder / "red"), "--csv", str(target), "--top-k", "2",
                 "--not-sure-below", "1"])  # every real probability is below 1: all rows are not sure
    out, err = capsys.readouterr()
    assert code == 2  # the broken file: still reported, still in the CSV
    with open(target, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == ["image", "label", "probability", "label_2", "probability_2", "not_sure", "error"]
    assert len(rows) == 13 and sum(row["error"] != "" for row in rows) == 1
    assert all(row["not_sure"] == "true" for row in rows if not row["error"])
    assert out.count("(not sure)") == 12 and f"wrote 13 predictions (12 not sure) to {target}" in err

    assert main(["predict", str(trained_run), str(colour_folder / "green"), "--not-sure-below", "0"]) == 0
    assert "(not sure)" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--not-sure-below", "1.5"], "--not-sure-below is a probability from 0 to 1, not 1.5"),
        (["--csv", "{tmp}"], "is a folder; give a file name"),
        (["--csv", "{tmp}/notes.txt/predictions.csv"], "cannot write"),
    ],
)
def test_predict_csv_problems_are_one_clear_line(trained_run, colour_folder, tmp_path, capsys, extra, message):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    capsys.readouterr()
    argv = ["predict", str(trained_run), str(colour_folder / "green"), *(a.format(tmp=tmp_path) for a in extra)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "Errno" not in err


def test_predict_help_shows_the_core_threshold(capsys):
    from headswap_gui.core.predict import NOT_SURE_BELOW

    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width
    assert f"default {NOT_SURE_BELOW:g}" in help_text  # the help repeats the number (no torch import for --help)


@pytest.mark.parametrize("export_format, suffix", [("torchscript", "pt"), ("onnx", "onnx")])
def test_export_reports_parity(trained_run, tmp_path, capsys, export_format, suffix):
    capsys.readouterr()
    target = tmp_path / f"model.{suffix}"
    assert main(["export", str(trained_run), "--format", export_format, "-o", str(target)]) == 0
    out = capsys.readouterr().out
    assert target.is_file() and "validation images" in out
    difference = float(out.rsplit("=", 1)[1])
    assert difference < 1e-3


def test_training_a_folder_without_classes_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "only").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "only" / "a.png")
    code = main(["train", "demo", str(tmp_path), "-o", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "class" in err and "Traceback" not in err
