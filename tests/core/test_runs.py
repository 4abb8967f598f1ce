"""Run folders on disk: model folders, resume checkpoints, optimizer state without pickle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from headswap_gui.core import runs, sources
from headswap_gui.core.errors import HeadswapError
from headswap_gui.core.freezing import apply_freeze, build_optimizer, plan_freeze, trainable_parameters_match_optimizer
from headswap_gui.core.run_manifest import METRICS_FILE


def tiny_loaded(seed: int = 0) -> sources.LoadedModel:
    torch.manual_seed(seed)
    loaded = sources.load_model("timm:test_efficientnet")
    sources.swap_head(loaded, 3, class_names=["a", "b", "c"])
    return loaded


def stepped_optimizer(model: torch.nn.Module, kind: str, phase: str):
    """An optimizer over the ``phase`` parameters of a gradual policy, after two steps."""
    plan = plan_freeze(model, ["classifier"], "gradual", phase)  # type: ignore[arg-type]
    apply_freeze(model, plan)
    optimizer = build_optimizer(model, plan, kind=kind, lr=0.01, weight_decay=0.01)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(2, 3, 32, 32)).square().mean().backward()
        optimizer.step()
    return plan, optimizer


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
@pytest.mark.parametrize("phase", ["head", "full"])
def test_a_checkpoint_restores_the_optimizer_exactly(tmp_path: Path, kind: str, phase: str):
    loaded = tiny_loaded()
    model = loaded.model.train()
    _, optimizer = stepped_optimizer(model, kind, phase)
    runs.checkpoint_writer(model, optimizer, {"epoch": 4, "phase": phase})[0](str(tmp_path / "last.safetensors"))

    checkpoint = runs.read_checkpoint(tmp_path / "last.safetensors")
    assert checkpoint.epoch == 4 and checkpoint.state["phase"] == phase

    fresh = tiny_loaded(seed=1).model  # other weights; the checkpoint replaces them all
    fresh.load_state_dict(checkpoint.model_state)
    plan = plan_freeze(fresh, ["classifier"], "gradual", checkpoint.state["phase"])
    apply_freeze(fresh, plan)
    restored = build_optimizer(fresh, plan, kind=kind, lr=0.5, weight_decay=0.01)
    runs.load_optimizer_state(restored, checkpoint.optimizer_tensors, checkpoint.state["optimizer_layout"])
    assert trainable_parameters_match_optimizer(fresh, restored)
    assert [g["lr"] for g in restored.param_groups] == [g["lr"] for g in optimizer.param_groups]
    originals = dict(model.named_parameters())
    copies = dict(fresh.named_parameters())
    keys = "exp_avg exp_avg_sq step".split() if kind == "adamw" else ["momentum_buffer"]
    for group in optimizer.param_groups:
        for name in group["param_names"]:
            for key in keys:
                assert torch.equal(optimizer.state[originals[name]][key], restored.state[copies[name]][key]), (name, key)
    assert all(torch.equal(originals[n], copies[n]) for n in originals)


def test_a_checkpoint_refuses_other_parameter_groups(tmp_path: Path):
    model = tiny_loaded().model.train()
    _, optimizer = stepped_optimizer(model, "adamw", "head")
    runs.checkpoint_writer(model, optimizer, {"epoch": 1, "phase": "head"})[0](str(tmp_path / "last.safetensors"))
    checkpoint = runs.read_checkpoint(tmp_path / "last.safetensors")
    plan = plan_freeze(model, ["classifier"], "full")
    apply_freeze(model, plan)
    other = build_optimizer(model, plan)
    with pytest.raises(HeadswapError, match="parameter groups"):
        runs.load_optimizer_state(other, checkpoint.optimizer_tensors, checkpoint.state["optimizer_layout"])


def test_missing_or_damaged_checkpoints_are_explained(tmp_path: Path):
    with pytest.raises(HeadswapError, match="missing"):
        runs.read_checkpoint(tmp_path / "last-e0001.safetensors")
    (tmp_path / "last-e0001.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(HeadswapError, match="damaged"):
        runs.read_checkpoint(tmp_path / "last-e0001.safetensors")


def test_metrics_are_plain_csv(tmp_path: Path):
    rows = [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.75}]
    runs.write_metrics_csv(tmp_path / METRICS_FILE, rows)
    assert (tmp_path / METRICS_FILE).read_text() == "epoch,val_accuracy\n1,0.5\n2,0.75\n"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_model_folder_reloads_with_identical_logits(tmp_path: Path):
    loaded = tiny_loaded()
    runs.save_model_folder(tmp_path, loaded, {"note": "kept"})
    reloaded = sources.load_model(str(tmp_path))
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(images), reloaded.model(images))
    assert reloaded.class_names == ("a", "b", "c") and reloaded.metadata["note"] == "kept"
