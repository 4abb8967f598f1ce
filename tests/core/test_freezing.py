"""Freeze policies, backbone blocks, parameter groups, optimizers and schedules."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from headswap_gui.core import sources
from headswap_gui.core.construction import build_empty
from headswap_gui.core.errors import HeadswapError
from headswap_gui.core.freezing import (
    apply_freeze,
    backbone_blocks,
    build_optimizer,
    build_param_groups,
    build_schedule,
    carry_optimizer_state,
    in_paths,
    plan_freeze,
    set_train_mode,
    trainable_parameters_match_optimizer,
)


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    loaded = sources.load_model("timm:test_efficientnet")
    sources.swap_head(loaded, 3)
    return loaded.model


def check_blocks_cover_the_backbone(model: nn.Module, heads: list[str]) -> list:
    blocks = backbone_blocks(model, heads)
    names = [n for block in blocks for n in block.parameter_names]
    expected = [n for n, _ in model.named_parameters() if not in_paths(n, heads)]
    assert sorted(names) == sorted(expected) and len(names) == len(set(names))
    return blocks


def test_blocks_follow_each_family_structure():
    resnet = build_empty(torchvision.models.resnet18)
    assert [b.name for b in check_blocks_cover_the_backbone(resnet, ["fc"])] == ["stem + layer1", "layer2", "layer3", "layer4"]
    effnet = tiny_model()  # timm: conv_stem bn1 blocks.0..4 conv_head bn2, grouped by its group_matcher
    blocks = check_blocks_cover_the_backbone(effnet, ["classifier"])
    assert [b.name for b in blocks] == ["conv_stem + bn1", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "blocks.4 + conv_head + bn2"]
    assert "conv_head.weight" in blocks[-1].parameter_names and "conv_stem.weight" in blocks[0].parameter_names
    tv_effnet = build_empty(torchvision.models.efficientnet_b0)
    assert [b.name for b in check_blocks_cover_the_backbone(tv_effnet, ["classifier.1"])][-2:] == ["features.7", "features.8"]
    googlenet = build_empty(lambda: torchvision.models.googlenet(init_weights=False, aux_logits=True))
    blocks = check_blocks_cover_the_backbone(googlenet, ["fc", "aux1.fc2", "aux2.fc2"])
    assert blocks[-1].name == "inception5b + tail" and "aux1.fc1.weight" in blocks[-1].parameter_names
    vit = build_empty(torchvision.models.vit_b_16)
    blocks = check_blocks_cover_the_backbone(vit, ["heads.head"])
    assert len(blocks) == 12 and "encoder.pos_embedding" in blocks[0].parameter_names


def test_head_policy_trains_only_the_head_and_keeps_the_backbone_in_eval_mode():
    model = tiny_model()
    plan = plan_freeze(model, ["classifier"], "head")
    apply_freeze(model, plan)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"classifier.weight", "classifier.bias"}
    set_train_mode(model, plan)
    for path, module in model.named_modules():
        if path and not path.startswith("classifier"):
            assert not module.training, path
    assert model.classifier.training and model.training


def test_last_k_trains_the_last_blocks_and_freezes_the_statistics_of_the_rest():
    model = tiny_model()
    plan = plan_freeze(model, ["classifier"], "last-k", last_k=2)
    apply_freeze(model, plan)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("blocks.3.") for n in trainable) and "conv_head.weight" in trainable
    assert not any(n.startswith(("blocks.2.", "conv_stem")) for n in trainable)
    set_train_mode(model, plan)
    assert not model.bn1.training and not model.blocks[2].training
    assert model.blocks[3].training and model.bn2.training and model.classifier.training
    with pytest.raises(HeadswapError, match="k ≥ 1"):
        plan_freeze(model, ["classifier"], "last-k", last_k=0)


def test_the_optimizer_holds_exactly_the_trainable_parameters_after_every_policy_change():
    model = tiny_model()
    heads = ["classifier"]
    phases = [("head", None), ("gradual", None), ("gradual", "full"), ("last-k", None), ("full", None), ("head", None)]
    previous, previous_trainable = None, None
    for policy, phase in phases:
        plan = plan_freeze(model, heads, policy, phase, last_k=1)
        apply_freeze(model, plan)
        optimizer = build_optimizer(model, plan, kind="adamw", lr=0.1, weight_decay=0.01, backbone_lr_factor=0.1)
        assert trainable_parameters_match_optimizer(model, optimizer), (policy, phase)
        if previous is not None and plan.trainable != previous_trainable:  # a stale optimizer is caught
            assert not trainable_parameters_match_optimizer(model, previous), (policy, phase)
        previous, previous_trainable = optimizer, plan.trainable
    model.conv_stem.weight.requires_grad_(True)  # drifts from the optimizer: detected
    assert not trainable_parameters_match_optimizer(model, previous)


def test_param_groups_give_the_backbone_a_lower_lr_and_no_decay_to_biases_and_norms():
    model = tiny_model()
    plan = plan_freeze(model, ["classifier"], "full")
    apply_freeze(model, plan)
    groups = build_param_groups(model, plan, lr=1.0, weight_decay=0.05, backbone_lr_factor=0.1)
    by_name = {g["name"]: g for g in groups}
    assert list(by_name) == ["head", "head (no decay)", "backbone", "backbone (no decay)"]
    assert by_name["head"]["lr"] == 1.0 and by_name["backbone"]["lr"] == pytest.approx(0.1)
    assert by_name["backbone (no decay)"]["weight_decay"] == 0.0 and by_name["backbone"]["weight_decay"] == 0.05
    assert by_name["head (no decay)"]["param_names"] == ["classifier.bias"]
    assert all(p.ndim == 1 for p in by_name["backbone (no decay)"]["params"])
    sgd = build_optimizer(model, plan, kind="sgd", lr=1.0, backbone_lr_factor=0.1)
    assert all(g["momentum"] == 0.9 for g in sgd.param_groups)
    with pytest.raises(HeadswapError, match="optimizer"):
        build_optimizer(model, plan, kind="lion")


def test_unfreezing_carries_the_head_moments_over():
    model = tiny_model()
    plan = plan_freeze(model, ["classifier"], "gradual")
    apply_freeze(model, plan)
    head_only = build_optimizer(model, plan, lr=0.01)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    head_only.step()
    plan = plan_freeze(model, ["classifier"], "gradual", "full")
    apply_freeze(model, plan)
    everything = build_optimizer(model, plan, lr=0.01)
    assert carry_optimizer_state(head_only, everything) == 2
    assert torch.equal(everything.state[model.classifier.weight]["exp_avg"], head_only.state[model.classifier.weight]["exp_avg"])
    assert trainable_parameters_match_optimizer(model, everything)


def test_the_schedule_sets_each_group_from_its_initial_lr():
    model = tiny_model()
    plan = plan_freeze(model, ["classifier"], "full")
    apply_freeze(model, plan)
    optimizer = build_optimizer(model, plan, lr=1.0, backbone_lr_factor=0.5)
    schedule = build_schedule("cosine", optimizer, epochs=1, steps_per_epoch=4, warmup_epochs=0)
    optimizer.step()
    schedule.step()
    factor = 0.5 * (1 + math.cos(math.pi / 4))  # step 1 of 4, no warm-up
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(group["initial_lr"] * factor)
    with pytest.raises(HeadswapError, match="schedule"):
        build_schedule("step", optimizer, epochs=1, steps_per_epoch=4)


def test_a_runs_phase_rebuilds_optimizer_and_schedule_together_at_the_unfreeze():
    from headswap_gui.core.optimizer_phase import PhaseOptimizer
    from headswap_gui.core.train_config import TrainConfig

    model = tiny_model()
    config = TrainConfig(epochs=4, freeze="gradual", unfreeze_after=1, lr=0.01, warmup_epochs=0.0, backbone_lr_factor=0.1)
    phase = PhaseOptimizer(model, ["classifier"], config, steps_per_epoch=3)
    assert phase.plan.phase == "head" and phase.phase_epochs() == (0, 1)
    assert trainable_parameters_match_optimizer(model, phase.optimizer)
    assert not phase.unfreezes_at(0) and phase.unfreezes_at(1)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    phase.optimizer.step()
    head_moments = phase.optimizer.state[model.classifier.weight]["exp_avg"].clone()
    head_only, schedule = phase.optimizer, phase.schedule
    note = phase.unfreeze(1)
    assert "epoch 2" in note and "lr × 0.1" in note
    assert phase.optimizer is not head_only and phase.schedule is not schedule
    assert phase.plan.phase == "full" and phase.phase_epochs() == (1, 3) and not phase.unfreezes_at(2)
    assert trainable_parameters_match_optimizer(model, phase.optimizer)
    assert not trainable_parameters_match_optimizer(model, head_only)  # the stale one would miss the backbone
    assert torch.equal(phase.optimizer.state[model.classifier.weight]["exp_avg"], head_moments)
    backbone = next(g for g in phase.optimizer.param_groups if g["name"] == "backbone")
    assert backbone["lr"] == pytest.approx(0.001)
