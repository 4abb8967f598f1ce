"""Heads for every model: models that do not say their input size, feature extractors, no
heads inside a trunk, no side effects of looking."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from torch import nn

from headswap_gui.cli import main as cli_main
from headswap_gui.core.construction import build_empty
from headswap_gui.core.errors import HeadNotFoundError
from headswap_gui.core.heads import detect_heads, find_heads, replace_head, set_head_module
from headswap_gui.core.input_size import declared_input_size, find_input_size
from headswap_gui.core.tracing import trace_forward


class UserContainer(nn.Module):
    """What a user's own model file holds: their model one level down, no stated input size."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


_SMALL_WORDS = ("test", "pico", "femto", "atto", "nano", "xxs", "xxtiny", "tiny", "xs", "mini", "small", "_s")


def _one_per_timm_module() -> list[str]:
    """One architecture from every timm model module, the smallest-sounding one (test, pico,
    femto, atto, nano, … small variants), then the smallest default input and shortest name,
    so the sample stays quick."""
    def cost(name: str) -> tuple[int, int, int, str]:
        word = next((i for i, w in enumerate(_SMALL_WORDS) if w in name), len(_SMALL_WORDS))
        cfg = timm.models.get_pretrained_cfg(name)
        size = cfg.input_size[-1] if cfg is not None and cfg.input_size else 224
        return word, size, len(name), name

    return sorted(min(names, key=cost) for m in timm.list_modules() if (names := timm.list_models(module=m)))


TIMM_SAMPLE = _one_per_timm_module()


def test_the_sample_covers_every_timm_model_module():
    modules = [m for m in timm.list_modules() if timm.list_models(module=m)]
    assert len(TIMM_SAMPLE) == len(modules) >= 90
    assert all(set(timm.list_models(module=m)) & set(TIMM_SAMPLE) for m in modules)  # one of each, none missed


@pytest.mark.parametrize("name", TIMM_SAMPLE)
def test_wrapped_timm_models_without_an_input_size(name):
    inner = build_empty(lambda: timm.create_model(name, pretrained=False))
    model = UserContainer(inner)
    heads = find_heads(model)  # no input size: the model's own, or the first that runs
    cfg = inner.pretrained_cfg
    if inner.num_classes:
        declared = cfg["classifier"]
        declared = {declared} if isinstance(declared, str) else set(declared)
        # get_classifier() is timm's second word on it: LeViT's cfg omits the distillation head.
        classifiers = inner.get_classifier()
        classifiers = classifiers if isinstance(classifiers, tuple) else (classifiers,)
        paths = {id(m): p for p, m in model.named_modules()}
        inside = [paths[id(c)] for c in classifiers if id(c) in paths]
        distillation = {h.path for h in heads if h.role == "distillation" and any(h.path.startswith(p) for p in inside)}
        assert {h.path for h in heads} == {f"model.{p}" for p in declared} | distillation
    else:
        assert [h.role for h in heads] == ["new"] * len(heads) and heads
    size = find_input_size(model).size
    replace_head(model, 5, heads=heads)
    assert trace_forward(model, size, meta_only=True).main_outputs[0].shape == (2, 5)


def test_the_declared_size_wins_over_the_family_config():
    vit = build_empty(lambda: timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=128))
    assert vit.pretrained_cfg["input_size"][-1] == 224  # the family's config still says 224
    assert declared_input_size(UserContainer(vit)) == (128, "model.patch_embed.img_size")
    assert find_input_size(UserContainer(vit)).size == 128
    assert find_heads(UserContainer(vit))[0].path == "model.head"


class OnlyAt288(nn.Module):
    """A model that says nothing and runs at one size only, not 224."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 8, kernel_size=3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 288:
            raise AssertionError(f"Input height ({x.shape[-1]}) doesn't match model (288)")
        return self.fc(self.features(x).mean((2, 3)))


def test_a_silent_model_is_probed_at_common_sizes():
    found = find_input_size(OnlyAt288())
    assert found.size == 288 and "common size" in found.how
    assert [h.path for h in find_heads(OnlyAt288())] == ["fc"]


def test_feature_extractors_report_their_empty_slot():
    siglip = UserContainer(build_empty(lambda: timm.create_model("vit_base_patch16_siglip_224", pretrained=False, num_classes=0)))
    heads = find_heads(siglip)
    # The attention pool's projection and MLP are part of the trunk: never heads.
    assert [(h.path, h.role, h.in_features, h.out_features) for h in heads] == [("model.head", "new", 768, 0)]
    new = replace_head(siglip, 3, heads=heads)
    assert [(h.path, h.role, h.out_features) for h in new] == [("model.head", "main", 3)]
    assert trace_forward(siglip, 224, meta_only=True).main_outputs[0].shape == (2, 3)


class Residual(nn.Module):
    """Output = x + proj(x): the projection feeds a residual stream, it is not a head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(12, 6)
        self.proj = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.mean((2, 3)).repeat(1, 4))
        return h + self.proj(h)


def test_a_projection_added_to_a_residual_stream_is_never_a_head():
    with pytest.raises(HeadNotFoundError, match="name the head layer yourself"):
        find_heads(Residual(), 32)


class NoMetaKernels(nn.Module):
    """Runs only for real (``.tolist()`` has no meta kernel), with BatchNorm in it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = float(x.detach().flatten()[:1].tolist()[0]) + 1.0
        return self.fc(self.bn(self.conv(x * scale)).mean((2, 3)))


@pytest.mark.parametrize("training", [False, True])
def test_looking_for_heads_changes_no_weight_or_buffer(training):
    model = NoMetaKernels().train(training)
    with torch.no_grad():
        model.bn.running_mean.uniform_()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    detection = detect_heads(model)  # the meta pass fails; the real eval and train passes run
    assert [h.path for h in detection.heads] == ["fc"]
    trace_forward(model, 32, train=True)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a trace moved a weight or buffer"
    assert model.training is training


def test_a_dinov2_style_feature_extractor_trains_end_to_end(tmp_path, capsys):
    from PIL import Image

    data = tmp_path / "data"
    for label, colour in (("red", (220, 30, 30)), ("blue", (30, 40, 220))):
        (data / label).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (40, 40), tuple(c + 3 * i for c in colour)).save(data / label / f"{i}.png")
    backbone = timm.create_model(
        "vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=56, depth=2, embed_dim=48, num_heads=2,
    )
    path = tmp_path / "dinov2_features.pt"
    torch.save(backbone, path)
    run = tmp_path / "run"
    assert cli_main(["train", str(path), str(data), "-o", str(run), "--trust", "--epochs", "2",
                     "--batch-size", "4", "--freeze", "full", "--lr", "3e-3"]) == 0
    assert cli_main(["predict", str(run), str(data / "red")]) == 2  # the run names the pickle: trust it again
    assert "--trust" in capsys.readouterr().err
    assert cli_main(["predict", str(run), str(data / "red"), "--json", "--trust"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert len(predictions) == 6 and {p["top"][0]["label"] for p in predictions} <= {"red", "blue"}


@pytest.fixture
def two_colours(tmp_path):
    from PIL import Image

    data = tmp_path / "data"
    for label, colour in (("red", (220, 30, 30)), ("blue", (30, 40, 220))):
        (data / label).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (40, 40), tuple(c + 3 * i for c in colour)).save(data / label / f"{i}.png")
    return data


def test_a_vit_trains_at_another_size_and_its_run_reloads(two_colours, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_main(["train", "timm:vit_tiny_patch16_224", str(two_colours), "-o", str(run), "--epochs", "1",
                     "--image-size", "64", "--batch-size", "4", "--freeze", "full"]) == 0  # built for 224 px
    assert "set_input_size" in capsys.readouterr().err
    assert cli_main(["predict", str(run), str(two_colours / "red"), "--json"]) == 0


def test_an_image_size_the_model_cannot_take_is_refused_before_any_work(two_colours, tmp_path, capsys):
    path = tmp_path / "only288.pt"
    torch.save(OnlyAt288(), path)
    run = tmp_path / "run"
    assert cli_main(["train", str(path), str(two_colours), "-o", str(run), "--trust", "--image-size", "64"]) == 2
    err = capsys.readouterr().err
    assert "does not run at 64×64 px; it runs at 288 px" in err and "Traceback" not in err
    assert not run.exists()


class TokenEncoder(nn.Module):
    """An encoder with no head slot that outputs tokens (B, N, C), like a VLM's vision tower."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 16, kernel_size=8, stride=8)
        self.norm = nn.LayerNorm(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.patch(x).flatten(2).transpose(1, 2))


def test_an_encoder_without_a_slot_gets_a_head_attached_and_detached():
    model = TokenEncoder()
    names = set(model.state_dict())
    heads = find_heads(model, 32)
    assert [(h.path, h.role, h.in_features) for h in heads] == [("headswap_head", "new", 16)]
    images = torch.rand(2, 3, 32, 32)
    tokens = model(images)
    new = replace_head(model, 3, heads=heads)
    assert [(h.path, h.role, h.out_features) for h in new] == [("headswap_head", "main", 3)]
    assert model(images).shape == (2, 3)
    assert set(model.state_dict()) == names | {"headswap_head.weight", "headswap_head.bias"}  # backbone names kept
    assert torch.equal(model(images), model.headswap_head(tokens.mean(1)))  # the mean of the tokens
    assert [h.path for h in find_heads(model, 32)] == ["headswap_head"]  # found again, now as a head
    set_head_module(model, "headswap_head", None)  # undo
    assert type(model) is TokenEncoder and torch.equal(model(images), tokens)


def test_an_encoder_with_an_attached_head_trains_and_its_run_reloads(two_colours, tmp_path, capsys):
    path = tmp_path / "encoder.pt"
    torch.save(TokenEncoder(), path)
    run = tmp_path / "run"
    assert cli_main(["train", str(path), str(two_colours), "-o", str(run), "--trust", "--epochs", "1",
                     "--image-size", "32", "--batch-size", "4", "--freeze", "full"]) == 0
    capsys.readouterr()
    assert cli_main(["predict", str(run), str(two_colours / "red"), "--json", "--trust"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 6
