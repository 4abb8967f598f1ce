"""The headswap command: inspect, swap and clear one-line errors (never a traceback)."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision

from headswap_gui.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_demo_marks_the_head(capsys):
    code, out, err = run(capsys, "inspect", "demo", "--depth", "1")
    assert code == 0, err
    assert "classifier (Linear)" in out and "◀ HEAD (main)" in out
    assert "mean (0.500, 0.500, 0.500)" in out


def test_inspect_json_has_model_heads_and_layers(capsys):
    code, out, _ = run(capsys, "inspect", "torchvision:googlenet", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["model"]["class"] == "GoogLeNet" and report["model"]["parameters"] > 6_000_000
    assert report["model"]["preprocessing"]["input_size"] == 224
    assert {(h["path"], h["role"]) for h in report["heads"]} == {
        ("fc", "main"), ("aux1.fc2", "auxiliary"), ("aux2.fc2", "auxiliary")}
    assert set(report["heads"][0]) == {"path", "type", "in_features", "out_features", "role", "found_by"}
    layers = report["layers"]
    assert set(layers) >= {"path", "type", "params", "trainable", "output_shape", "children"}
    fc = next(child for child in layers["children"] if child["path"] == "fc")
    assert fc["output_shape"] == [2, 1000] and fc["params"] == 1024 * 1000 + 1000


def test_swap_writes_a_folder_that_inspect_accepts(capsys, tmp_path):
    out_dir = tmp_path / "swapped"
    code, out, err = run(capsys, "swap", "torchvision:resnet18", "--classes", "7", "--head", "mlp",
                         "--hidden", "64", "--dropout", "0.2", "--class-names", "a,b,c,d,e,f,g", "-o", str(out_dir))
    assert code == 0, err
    assert (out_dir / "model.safetensors").is_file() and (out_dir / "headswap.json").is_file()
    code, out, _ = run(capsys, "inspect", str(out_dir), "--json")
    report = json.loads(out)
    assert report["heads"][0]["out_features"] == 7 and report["heads"][0]["path"] == "fc"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["inspect", "torchvision:resnet5"], "no classification model 'resnet5'"),
        (["inspect", "bogus"], "unknown model source"),
        (["swap", "torchvision:resnet18", "--classes", "0", "-o", "x"], "at least 1"),
        (["inspect", "torchvision:resnet18", "--head-path", "layer9"], "no layer 'layer9'"),
    ],
)
def test_bad_input_gets_one_clear_line(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_untrusted_pickles_and_bad_files(capsys, tmp_path):
    torch.save(torchvision.models.squeezenet1_1(num_classes=2), tmp_path / "full.pt")
    code, _, err = run(capsys, "inspect", str(tmp_path / "full.pt"))
    assert code == 2 and "--trust" in err
    code, out, _ = run(capsys, "inspect", str(tmp_path / "full.pt"), "--trust", "--depth", "0")
    assert code == 0 and "classifier.1" in out
    (tmp_path / "zero.pth").write_bytes(b"")
    code, _, err = run(capsys, "inspect", str(tmp_path / "zero.pth"), "--arch", "torchvision:resnet18")
    assert code == 2 and "not a readable PyTorch file" in err
    state = torchvision.models.resnet18().state_dict()
    state["fc.bias"] = torch.zeros(3)
    state["layer1.0.bn1.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "wrong.pt")
    code, _, err = run(capsys, "inspect", str(tmp_path / "wrong.pt"), "--arch", "torchvision:resnet18")
    assert code == 2 and "layer1.0.bn1.weight" in err


def test_a_model_without_a_head_asks_for_head_path(capsys, tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    torch.save(model, tmp_path / "headless.pt")
    code, _, err = run(capsys, "inspect", str(tmp_path / "headless.pt"), "--trust")
    assert code == 2 and "--head-path" in err
