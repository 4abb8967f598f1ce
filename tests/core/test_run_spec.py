"""``headswap train --config FILE``: a config file, or a finished run's headswap.json,
repeats the run; the cluster job folder holds a config that does the same."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from headswap_gui.cli import main
from headswap_gui.core import sources
from headswap_gui.core.cluster import write_cluster_job
from headswap_gui.core.errors import HeadswapError
from headswap_gui.core.heads import HeadSpec
from headswap_gui.core.run_spec import TrainSpec, read_train_spec, write_train_spec
from headswap_gui.core.runs import save_model_folder
from headswap_gui.core.train_config import TrainConfig

FLAGS = ["--epochs", "2", "--image-size", "32", "--batch-size", "8", "--seed", "4", "--lr", "5e-3",
         "--head", "mlp", "--hidden", "16", "--threads", "1"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("spec")
    torch.manual_seed(0)
    loaded = sources.load_model("timm:test_efficientnet")
    sources.swap_head(loaded, 3)
    save_model_folder(root / "model", loaded)
    rng = np.random.default_rng(1)
    for name, colour in {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}.items():
        (root / "data" / name).mkdir(parents=True)
        for index in range(10):
            pixels = np.clip(np.array(colour) + rng.normal(0, 50, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "data" / name / f"{index}.png")
    return root / "model", root / "data"


@pytest.fixture(scope="module")
def flagged_run(folders, tmp_path_factory):
    model, data = folders
    run = tmp_path_factory.mktemp("runs") / "flags"
    assert main(["train", str(model), str(data), "-o", str(run), *FLAGS]) == 0
    return run


def recipe(run) -> tuple[dict, list]:
    """What a run learned with, and what it learned (timings aside)."""
    manifest = json.loads((run / "headswap.json").read_text())
    curves = [{k: v for k, v in e.items() if k not in ("seconds", "images_per_second")} for e in manifest["epochs"]]
    heads = [h["spec"] for h in manifest["heads"]]
    return {"training": manifest["training"], "heads": heads, "split": manifest["split"]}, curves


def test_a_finished_runs_manifest_repeats_the_run(flagged_run, tmp_path):
    again = tmp_path / "again"
    assert main(["train", "--config", str(flagged_run / "headswap.json"), "-o", str(again)]) == 0
    assert recipe(again) == recipe(flagged_run)


def test_the_cluster_jobs_config_repeats_the_run(flagged_run, folders, tmp_path):
    model, data = folders
    recorded = json.loads((flagged_run / "headswap.json").read_text())
    spec = TrainSpec(str(model), str(data), TrainConfig.from_dict(recorded["training"]), HeadSpec("mlp", (16,)))
    job = write_cluster_job(tmp_path / "job", spec, nodes=2, gpus_per_node=4)
    assert read_train_spec(job.config_file) == TrainSpec(
        spec.source, spec.data, spec.config, spec.head, output=str(tmp_path / "job" / "run"),
    )
    for script in (job.torchrun_script, job.sbatch_script):
        text = script.read_text()
        assert os.access(script, os.X_OK) and f"train --config {job.config_file}" in text and "torchrun" in text
    assert "#SBATCH --nodes=2" in job.sbatch_script.read_text() and "--rdzv-backend c10d" in job.sbatch_script.read_text()
    assert job.command.startswith("torchrun --standalone --nproc_per_node 4 ")
    assert main(["train", "--config", str(job.config_file)]) == 0  # into job/run, as the file says
    assert recipe(tmp_path / "job" / "run") == recipe(flagged_run)


def test_flags_override_the_file_and_toml_reads_alike(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('source = "demo"\ndata = "/data/digits"\n[head]\ndesign = "linear"\n'
                    '[training]\nepochs = 7\nbatch_size = 16\nlr = 0.02\n')
    spec = read_train_spec(toml)
    assert (spec.source, spec.data, spec.output, spec.head) == ("demo", "/data/digits", None, HeadSpec())
    assert spec.config == TrainConfig(epochs=7, batch_size=16, lr=0.02)
    json_file = write_train_spec(tmp_path / "run.json", spec)
    assert read_train_spec(json_file) == spec


@pytest.mark.parametrize("content, message", [
    ('{"source": "demo", "trainig": {}}', "unknown keys: trainig"),
    ('{"training": {"epochz": 3}}', "unknown training settings epochz"),
    ('{"training": {"epochs": 0}}', "epochs must be ≥ 1"),
    ('{"format": "headswap-model", "format_version": 2}', "describes a model, not a training run"),
    ("[1, 2]", "holds no settings object"),
    ("{", "is not valid JSON"),
])
def test_a_bad_config_file_says_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(HeadswapError, match=message):
        read_train_spec(path)


def test_the_command_line_names_a_missing_source(tmp_path, capsys):
    path = write_train_spec(tmp_path / "c.json", TrainSpec(None, None, TrainConfig()))
    assert main(["train", "--config", str(path)]) == 2
    assert "needs a model SOURCE and an image folder DATA" in capsys.readouterr().err
