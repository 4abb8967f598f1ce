"""headswap label-issues RUN DATA_DIR on a real run trained from the demo model."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from headswap_gui.cli import main

COLOURS = {"blue": (30, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}
SWAPPED = [("red", "green", 0), ("red", "blue", 1), ("green", "blue", 2), ("blue", "red", 3), ("green", "red", 4)]
"""(colour of the image, folder it is put in, index): five images filed under the wrong colour."""


def _square(colour, rng):
    return Image.fromarray(np.clip(np.array(colour) + rng.normal(0, 20, (24, 24, 3)), 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("colours") / "data"
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for index in range(20):
            _square(colour, rng).save(root / name / f"{name}_{index:02d}.png")
    for colour, wrong, index in SWAPPED:
        _square(COLOURS[colour], rng).save(root / wrong / f"odd_{index}.png")
    (root / "green" / "broken.png").write_bytes(b"")  # zero bytes
    return root


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "demo", str(folder), "-o", str(run), "--epochs", "1", "--image-size", "32",
                 "--batch-size", "16"]) == 0
    return run


def _training_swaps(run, folder):
    """The swapped files the run trained on (the others landed in its validation split)."""
    validated = {row[0] for row in json.loads((run / "headswap.json").read_text())["split"]["val"]}
    swapped = {f"{wrong}/odd_{index}.png" for _, wrong, index in SWAPPED}
    return {os.path.join(str(folder), *name.split("/")) for name in swapped - validated}, swapped & validated


def test_lists_the_swapped_training_files_first(run, folder, capsys):
    trained, validated = _training_swaps(run, folder)
    assert len(trained) >= 3  # the split of the fixture: most swapped files train
    capsys.readouterr()
    assert main(["label-issues", str(run), str(folder), "--top", str(len(trained) + 1)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["file", "given", "suggested", "score"]
    rows = [line.split() for line in lines[1:]]
    assert rows[0][0] == os.path.join(str(folder), "green", "broken.png") and "(broken: zero bytes)" in lines[1]
    files = {row[0] for row in rows[1:]}
    assert files == trained  # every swapped training file, nothing else; validation images are not checked
    for row in rows[1:]:
        colour = next(c for c, wrong, index in SWAPPED if row[0].endswith(os.path.join(wrong, f"odd_{index}.png")))
        assert row[1] == os.path.basename(os.path.dirname(row[0])) and row[2] == colour
        assert 0.0 <= float(row[3]) < 0.5
    assert "checking the labels of" in err and "likely label issue" in err


def test_json_lists_the_flagged_files(run, folder, capsys):
    trained, _ = _training_swaps(run, folder)
    capsys.readouterr()
    assert main(["label-issues", str(run), str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    split = json.loads((run / "headswap.json").read_text())["split"]
    assert report["folds"] == 5 and report["images"] == len(split["train"]) == 65 - len(split["val"])
    assert report["flagged"] == len(report["issues"]) and report["run"] == str(run)
    kinds = [issue["kind"] for issue in report["issues"]]
    assert kinds[0] == "broken" and kinds.count("broken") == 1
    labels = {issue["path"] for issue in report["issues"] if issue["kind"] == "label"}
    # The default list is the flagged one, a conservative estimate: only swapped files, most of them.
    assert labels <= trained and len(labels) >= len(trained) / 2
    first = next(issue for issue in report["issues"] if issue["kind"] == "label")
    assert set(first) == {"path", "given_label", "suggested_label", "score", "suggested_probability", "flagged",
                          "kind", "reason"}
    assert first["flagged"] is True and first["suggested_label"] in COLOURS


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["{run}", "{other}"], "does not match the run"),
        (["{run}", "{folder}", "--top", "0"], "--top is a number of images, 1 or more, not 0"),
        (["{missing}", "{folder}"], "no such file"),
        (["{run}", "{missing}"], "Image folder not found"),
    ],
)
def test_clear_one_line_errors(run, folder, tmp_path, capsys, arguments, message):
    other = tmp_path / "pets"
    for name in ("cat", "dog"):
        (other / name).mkdir(parents=True)
        Image.new("RGB", (8, 8), (9, 9, 9)).save(other / name / "a.png")
    values = {"run": run, "folder": folder, "other": other, "missing": tmp_path / "missing" / "x"}
    capsys.readouterr()
    assert main(["label-issues", *[a.format(**values) for a in arguments]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("headswap: error: ") and message in err and "\n" not in err
