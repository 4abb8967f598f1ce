"""The model's own optimiser metadata (timm's ``no_weight_decay`` and ``group_matcher``) and the
torch learning-rate scheduler that replaced the hand-written schedule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision
from PIL import Image
from timm.models import group_parameters
from torch import nn

from headswap_gui.core import runs, sources
from headswap_gui.core.data import scan_image_folder
from headswap_gui.core.events import EpochMetrics, RunFinished
from headswap_gui.core.freezing import (
    apply_freeze,
    backbone_blocks,
    build_optimizer,
    build_param_groups,
    build_schedule,
    no_weight_decay_patterns,
    plan_freeze,
    schedule_position,
    set_train_mode,
)
from headswap_gui.core.training import TrainConfig, fit


class Container(nn.Module):
    """A user's model: a timm ViT (its own head removed) inside a plain module, with a layer
    of its own before it and its own head after it."""

    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.Conv2d(3, 3, 1)
        self.backbone = timm.create_model("test_vit", pretrained=False, num_classes=0)
        self.fc = nn.Linear(self.backbone.num_features, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(self.pre(x)))


def groups_by_name(model: nn.Module, heads: list[str]) -> dict[str, list[str]]:
    plan = plan_freeze(model, heads, "full")
    apply_freeze(model, plan)
    groups = build_param_groups(model, plan, lr=1.0, weight_decay=0.05, backbone_lr_factor=0.1)
    assert all((g["weight_decay"] == 0.0) == g["name"].endswith("(no decay)") for g in groups)
    return {g["name"]: g["param_names"] for g in groups}


# --- weight decay --------------------------------------------------------------------------------


def test_a_wrapped_timm_vit_keeps_its_embeddings_free_of_weight_decay():
    torch.manual_seed(0)
    model = Container()
    groups = groups_by_name(model, ["fc"])
    undecayed = set(groups["backbone (no decay)"])
    assert {"backbone.pos_embed", "backbone.cls_token"} <= undecayed  # 3-D tensors, named by timm
    assert "backbone.blocks.0.attn.qkv.bias" in undecayed and "backbone.norm.weight" in undecayed  # 1-D
    assert "backbone.patch_embed.proj.weight" in groups["backbone"] and "pre.weight" in groups["backbone"]
    assert groups["head"] == ["fc.weight"] and groups["head (no decay)"] == ["fc.bias"]
    assert "backbone.pos_embed" in no_weight_decay_patterns(model)

    vit = timm.create_model("test_vit", pretrained=False, num_classes=3)  # unwrapped: the names as timm gives them
    assert {"pos_embed", "cls_token"} <= set(groups_by_name(vit, ["head"])["backbone (no decay)"])


def test_wildcard_names_match_the_way_timm_matches_them():
    class Relative(nn.Module):  # timm's protocol: some models name tables with a wildcard
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.ParameterDict({"a": nn.Parameter(torch.zeros(4, 4)), "b": nn.Parameter(torch.zeros(4, 4))})
            self.proj = nn.Linear(4, 4)

        def no_weight_decay(self) -> set[str]:
            return {"table.*"}

    model = nn.Sequential(Relative(), nn.Linear(4, 3))
    groups = groups_by_name(model, ["1"])
    assert groups["backbone (no decay)"] == ["0.table.a", "0.table.b", "0.proj.bias"]
    assert groups["backbone"] == ["0.proj.weight"]


def test_a_model_without_timm_metadata_decays_every_matrix():
    model = torchvision.models.resnet18(weights=None)
    assert no_weight_decay_patterns(model) == []
    groups = groups_by_name(model, ["fc"])
    params = dict(model.named_parameters())
    assert all(params[n].ndim > 1 for n in groups["backbone"]) and all(params[n].ndim == 1 for n in groups["backbone (no decay)"])


# --- blocks --------------------------------------------------------------------------------------


def test_last_k_unfreezes_timm_group_matcher_blocks_of_a_wrapped_vit():
    torch.manual_seed(0)
    model = Container()
    blocks = backbone_blocks(model, ["fc"])
    assert [b.name for b in blocks] == [
        "stem + backbone.cls_token + backbone.pos_embed + backbone.patch_embed",
        *(f"backbone.blocks.{i}" for i in range(5)),
        "backbone.blocks.5 + backbone.norm",
    ]
    # the same grouping as timm's own (its last group is its head, here removed)
    timm_groups = group_parameters(model.backbone, model.backbone.group_matcher(coarse=True))
    expected = [["backbone." + n for n in names] for _, names in sorted(timm_groups.items())]
    assert [list(b.parameter_names) for b in blocks] == [["pre.weight", "pre.bias", *expected[0]], *expected[1:]]

    plan = plan_freeze(model, ["fc"], "last-k", last_k=1)
    apply_freeze(model, plan)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(expected[-1]) | {"fc.weight", "fc.bias"}
    assert "backbone.blocks.5 + backbone.norm" in plan.description
    set_train_mode(model, plan)
    assert model.backbone.blocks[5].training and model.backbone.norm.training
    assert not model.backbone.blocks[4].training and not model.backbone.patch_embed.training

    plan = plan_freeze(model, ["fc"], "last-k", last_k=2)
    apply_freeze(model, plan)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("backbone.blocks.4.") for n in trainable)
    assert not any(n.startswith(("backbone.blocks.3.", "backbone.pos_embed", "pre.")) for n in trainable)


def test_a_model_without_timm_metadata_keeps_the_structural_blocks():
    model = torchvision.models.resnet18(weights=None)
    blocks = backbone_blocks(model, ["fc"])
    assert [b.name for b in blocks] == ["stem + layer1", "layer2", "layer3", "layer4"]
    plan = plan_freeze(model, ["fc"], "last-k", last_k=1)
    trainable = plan.trainable
    assert {n for n in trainable if not n.startswith("layer4.")} == {"fc.weight", "fc.bias"}
    assert {n for n, _ in model.named_parameters() if n.startswith("layer4.")} <= trainable


# --- schedule ------------------------------------------------------------------------------------


def one_group_optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    param = nn.Parameter(torch.zeros(1))
    return torch.optim.SGD([{"params": [param], "lr": lr, "initial_lr": lr}], lr=lr)


def lrs(optimizer: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    """The learning rate of each of the next ``steps`` optimizer steps."""
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return seen


def schedule_lrs(kind: str, steps: int, **settings: float) -> list[float]:
    optimizer = one_group_optimizer()
    return lrs(optimizer, build_schedule(kind, optimizer, **settings), steps)  # type: ignore[arg-type]


def test_the_scheduler_gives_the_learning_rates_of_the_old_schedule():
    exact = {"rel": 1e-12, "abs": 1e-15}
    # values of the hand-written schedule this replaced, at lr 1 (so lr = factor)
    cosine = schedule_lrs("cosine", 101, epochs=10, steps_per_epoch=10, warmup_epochs=1)
    assert cosine[0] == pytest.approx(1 / 11, **exact)  # warm-up: (step + 1) / (warm-up + 1)
    assert cosine[5] == pytest.approx(6 / 11, **exact) and cosine[9] == pytest.approx(10 / 11, **exact)
    assert cosine[10] == pytest.approx(1.0, **exact)
    assert cosine[11] == pytest.approx(0.9996954135095479, **exact)
    assert cosine[55] == pytest.approx(0.5, **exact)  # half-way through the decay
    assert cosine[99] == pytest.approx(0.00030458649045211894, **exact) and cosine[100] == 0.0

    onecycle = schedule_lrs("onecycle", 101, epochs=10, steps_per_epoch=10)
    assert onecycle[0] == pytest.approx(1 / 25, **exact)
    assert onecycle[5] == pytest.approx(0.10430780618346941, **exact)
    assert max(onecycle) == pytest.approx(1.0, **exact) and onecycle.index(max(onecycle)) == 30
    end = 1 / 25 / 1e4
    assert onecycle[65] == pytest.approx(end + (1 - end) * 0.5, **exact)
    assert onecycle[99] == pytest.approx(0.0005074647154757879, **exact) and onecycle[100] == pytest.approx(end, **exact)

    assert schedule_lrs("constant", 20, epochs=3, steps_per_epoch=5) == [1.0] * 20
    # a warm-up longer than the run ends one step before its end
    short = schedule_lrs("cosine", 7, epochs=2, steps_per_epoch=3, warmup_epochs=5)
    assert short == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0, 0.0], **exact)
    assert schedule_lrs("onecycle", 3, epochs=1, steps_per_epoch=2) == pytest.approx([0.04, 1.0, end], **exact)


def test_every_group_is_scaled_from_its_own_initial_lr():
    model = torchvision.models.resnet18(weights=None)
    plan = plan_freeze(model, ["fc"], "full")
    apply_freeze(model, plan)
    optimizer = build_optimizer(model, plan, lr=0.2, backbone_lr_factor=0.1)
    schedule = build_schedule("cosine", optimizer, epochs=1, steps_per_epoch=4)
    lrs(optimizer, schedule, 2)
    factor = 0.5 * (1 + math.cos(math.pi * 2 / 4))
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([g["initial_lr"] * factor for g in optimizer.param_groups])
    assert [g["initial_lr"] for g in optimizer.param_groups] == pytest.approx([0.2, 0.2, 0.02, 0.02])


def test_the_schedule_state_round_trips_as_json_and_resumes_at_the_same_step():
    settings = {"epochs": 4, "steps_per_epoch": 5, "warmup_epochs": 1}
    optimizer = one_group_optimizer(0.3)
    schedule = build_schedule("cosine", optimizer, **settings)
    lrs(optimizer, schedule, 7)
    saved = json.loads(json.dumps(schedule.state_dict()))  # as the checkpoint header stores it
    after = lrs(optimizer, schedule, 13)

    assert schedule_position(saved) == 7
    fresh = one_group_optimizer(0.3)
    resumed = build_schedule("cosine", fresh, **settings, start_step=schedule_position(saved))
    assert lrs(fresh, resumed, 13) == after

    # the shape comes from the settings of the resumed run: more epochs stretch the decay
    longer = {**settings, "epochs": 8}
    fresh = one_group_optimizer(0.3)
    resumed = build_schedule("cosine", fresh, **longer, start_step=7)
    optimizer = one_group_optimizer(0.3)
    assert lrs(fresh, resumed, 5) == lrs(optimizer, build_schedule("cosine", optimizer, **longer), 12)[7:]
    # checkpoints written by the hand-written schedule recorded the step as step_count
    assert schedule_position({"kind": "cosine", "total_steps": 20, "warmup_steps": 5, "step_count": 7}) == 7


def write_colour_folder(root: Path, per_class: int = 10) -> Path:
    rng = np.random.default_rng(0)
    for label, colour in enumerate(((220, 40, 40), (40, 200, 40), (40, 40, 220))):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = np.array(colour)[None, None] + rng.normal(0, 30, (16, 16, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return root


def test_a_resumed_run_restores_the_scheduler_from_its_checkpoint(tmp_path):
    dataset = scan_image_folder(write_colour_folder(tmp_path / "images"))
    config = TrainConfig(epochs=1, batch_size=8, lr=0.01, image_size=32, device="cpu", seed=0, schedule="onecycle")
    torch.manual_seed(0)
    loaded = sources.load_model("timm:test_efficientnet")
    sources.swap_head(loaded, 3)
    run_dir = tmp_path / "run"
    first = list(fit(loaded, dataset, config, run_dir))
    assert first[-1].reason == "completed"
    state = runs.read_checkpoint(run_dir / "last-e0001.safetensors").state
    steps = first[0].steps_per_epoch
    assert schedule_position(state["schedule"]) == steps
    assert set(state["schedule"]["lr_lambdas"]) == {None}  # the shape is not stored: it comes from the settings

    longer = TrainConfig(**{**config.to_dict(), "epochs": 2})  # resume may train longer
    resumed = list(fit(sources.load_model(str(run_dir)), dataset, longer, run_dir, resume=True))
    assert isinstance(resumed[-1], RunFinished) and resumed[-1].reason == "completed"
    [second] = [e for e in resumed if isinstance(e, EpochMetrics)]
    optimizer = one_group_optimizer(config.lr)
    expected = lrs(optimizer, build_schedule("onecycle", optimizer, epochs=2, steps_per_epoch=steps), 2 * steps)
    assert second.epoch == 2 and second.lr == pytest.approx(expected[-1], rel=1e-12)
    state = runs.read_checkpoint(run_dir / "last-e0002.safetensors").state
    assert schedule_position(state["schedule"]) == 2 * steps
