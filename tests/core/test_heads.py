"""Head detection and replacement across every torchvision classifier, 50+ timm
architectures, and custom models that no table knows."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from headswap_gui.core.construction import build_empty
from headswap_gui.core.errors import HeadError, HeadNotFoundError
from headswap_gui.core.heads import (
    HeadSpec,
    build_head,
    built_heads,
    count_head_params,
    detect_heads,
    find_heads,
    replace_head,
)
from headswap_gui.core.sources import load_model, torchvision_classifiers
from headswap_gui.core.tracing import trace_forward

warnings.filterwarnings("ignore", category=FutureWarning)

TORCHVISION_MAIN_HEAD = [
    (("alexnet", "vgg"), "classifier.6"),
    (("resnet", "resnext", "wide_resnet", "regnet", "shufflenet", "googlenet", "inception"), "fc"),
    (("efficientnet", "mobilenet_v2", "mnasnet", "squeezenet"), "classifier.1"),
    (("mobilenet_v3",), "classifier.3"),
    (("convnext",), "classifier.2"),
    (("maxvit",), "classifier.5"),
    (("densenet",), "classifier"),
    (("swin",), "head"),
    (("vit_",), "heads.head"),
]
AUX_HEADS = {"googlenet": {"aux1.fc2", "aux2.fc2"}, "inception_v3": {"AuxLogits.fc"}}


def expected_main_head(name: str) -> str:
    for prefixes, path in TORCHVISION_MAIN_HEAD:
        if name.startswith(prefixes):
            return path
    raise AssertionError(f"no expectation for {name}")


def structure(name: str):
    return load_model(f"torchvision:{name}", structure_only=True)


def test_there_are_80_torchvision_classifiers():
    assert len(torchvision_classifiers()) >= 80


@pytest.mark.parametrize("name", torchvision_classifiers())
def test_torchvision_heads_found_and_swapped(name):
    loaded = structure(name)
    size = loaded.preprocessing.input_size
    heads = find_heads(loaded.model, size)
    assert [h.path for h in heads if h.role == "main"] == [expected_main_head(name)]
    assert {h.path for h in heads if h.role == "auxiliary"} == AUX_HEADS.get(name, set())
    assert all(h.out_features == 1000 for h in heads)
    for num_classes in (2, 7):
        before = loaded.model.state_dict(keep_vars=True)
        head_paths = [h.path for h in heads]
        replace_head(loaded.model, num_classes, HeadSpec(), heads, size)
        after = loaded.model.state_dict(keep_vars=True)
        untouched = [k for k in before if not any(k.startswith(p + ".") for p in head_paths)]
        assert untouched and all(after[k] is before[k] for k in untouched), "a non-head tensor changed"
        detection = detect_heads(loaded.model, size)
        heads = list(detection.heads)
        assert [h.path for h in heads] == head_paths
        assert detection.eval_trace.main_outputs[0].shape == (2, num_classes)
        if name in AUX_HEADS:
            extras = detection.train_trace.extra_outputs
            assert [tuple(e.shape) for e in extras] == [(2, num_classes)] * len(AUX_HEADS[name])


@pytest.mark.parametrize("name", ["resnet18", "squeezenet1_1", "mobilenet_v3_small"])
def test_real_weights_outside_the_head_stay_bit_identical(name):
    torch.manual_seed(0)
    loaded = load_model(f"torchvision:{name}")
    heads = loaded.find_heads()
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    replace_head(loaded.model, 3, HeadSpec("mlp", (32,), dropout=0.1), heads)
    after = loaded.model.state_dict()
    for key, value in before.items():
        if not any(key.startswith(h.path + ".") for h in heads):
            assert torch.equal(after[key], value), key
    loaded.model.eval()
    with torch.no_grad():
        assert loaded.model(torch.randn(2, 3, 96, 96)).shape == (2, 3)
    loaded.model.train()
    output = loaded.model(torch.randn(2, 3, 224, 224))
    for logits in (output if isinstance(output, tuple) else (output,)):
        assert logits.shape == (2, 3)


def test_inspecting_the_largest_models_allocates_nothing():
    # Their inspection time is measured in bench/bench_inspect.py, not asserted here.
    for name in ("vit_h_14", "regnet_y_128gf"):
        loaded = structure(name)
        assert loaded.find_heads()[0].path == expected_main_head(name)
        assert all(p.device.type == "meta" for p in loaded.model.parameters())


TIMM_ARCHITECTURES = """resnet18 resnet50d resnext26ts seresnet18 efficientnet_b0 tf_efficientnet_lite0
mobilenetv3_small_100 mobilenetv2_100 mixnet_s convnext_atto convnextv2_atto vit_tiny_patch16_224
deit_tiny_distilled_patch16_224 deit_tiny_patch16_224 swin_tiny_patch4_window7_224 swinv2_cr_tiny_ns_224
regnetx_002 regnety_002 densenet121 dla34 ghostnet_100 hrnet_w18_small inception_v3 inception_v4 xception41
levit_128s mobilevit_xxs efficientformer_l1 poolformer_s12 pit_ti_224 crossvit_tiny_240 coat_lite_tiny
cait_xxs24_224 convmixer_768_32 mixer_s16_224 resmlp_12_224 gmlp_ti16_224 nf_resnet26 res2net50_14w_8s
rexnet_100 lcnet_050 tinynet_a fbnetc_100 mnasnet_100 spnasnet_100 hardcorenas_a botnet26t_256 halonet26t
cspresnet50 cspdarknet53 darknet53 vgg11 repvgg_a0 resnetv2_50 beit_base_patch16_224 maxvit_tiny_tf_224
coatnet_0_rw_224 edgenext_xx_small efficientvit_b0 fastvit_t8 repvit_m0_9 tiny_vit_5m_224 hiera_tiny_224
mobilenetv4_conv_small dm_nfnet_f0 xcit_nano_12_p16_224 volo_d1_224 twins_svt_small pvt_v2_b0 nest_tiny
tnt_s_patch16_224 visformer_tiny gcvit_xxtiny davit_tiny focalnet_tiny_srf inception_next_tiny
rdnet_tiny mambaout_femto starnet_s1""".split()


def test_at_least_50_timm_architectures_are_swept():
    assert len(TIMM_ARCHITECTURES) >= 50


@pytest.mark.parametrize("name", TIMM_ARCHITECTURES)
def test_timm_heads_match_timms_own_classifier(name):
    loaded = load_model(f"timm:{name}", structure_only=True)
    declared = loaded.model.pretrained_cfg["classifier"]
    declared = {declared} if isinstance(declared, str) else set(declared)
    heads = loaded.find_heads()
    assert {h.path for h in heads if h.role in ("main", "distillation")} == declared
    replace_head(loaded.model, 5, HeadSpec(), heads, loaded.preprocessing.input_size)
    assert trace_forward(loaded.model, loaded.preprocessing.input_size).main_outputs[0].shape == (2, 5)


def test_distillation_heads_are_marked_and_both_swapped():
    loaded = load_model("timm:deit_tiny_distilled_patch16_224", structure_only=True)
    roles = {h.path: h.role for h in loaded.find_heads()}
    assert roles == {"head": "main", "head_dist": "distillation"}


# --- custom models no table knows ------------------------------------------------------------


class UnderscoreNet(nn.Module):
    """Head named like the original EfficientNet-PyTorch: `_fc`."""

    def __init__(self) -> None:
        super().__init__()
        self._conv = nn.Conv2d(3, 8, 3, padding=1)
        self._pool = nn.AdaptiveAvgPool2d(1)
        self._fc = nn.Linear(8, 10)

    def forward(self, x):
        return self._fc(self._pool(torch.relu(self._conv(x))).flatten(1))


class SequentialNet(nn.Module):
    """Head at `net.4`, inside a Sequential, with a Linear hidden layer before it."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 6), nn.Linear(6, 3))

    def forward(self, x):
        return self.net(x)


class ConvHeadNet(nn.Module):
    """A 1×1 convolution producing the class maps, then pooling (SqueezeNet style)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU())
        self.score = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        return torch.flatten(nn.functional.adaptive_avg_pool2d(torch.relu(self.score(self.features(x))), 1), 1)


class TwoHeadNet(nn.Module):
    """Averages two heads, like a distilled model, with a norm layer that is not a head."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(8))
        self.head_a = nn.Linear(8, 5)
        self.head_dist = nn.Linear(8, 5)

    def forward(self, x):
        f = self.body(x)
        return (self.head_a(f) + self.head_dist(f)) / 2


class HeadlessNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(8))

    def forward(self, x):
        return self.body(x)


@pytest.mark.parametrize(
    "model_class, expected",
    [
        (UnderscoreNet, {"_fc": "main"}),
        (SequentialNet, {"net.4": "main"}),
        (ConvHeadNet, {"score": "main"}),
        (TwoHeadNet, {"head_a": "main", "head_dist": "distillation"}),
    ],
)
def test_custom_models_are_traced(model_class, expected):
    model = model_class()
    heads = find_heads(model, 32)
    assert {h.path: h.role for h in heads} == expected
    assert all(h.found_by.startswith("traced") for h in heads)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    replace_head(model, 2, HeadSpec("mlp", (16,), norm="batchnorm"), heads, 32)
    model.eval()
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 2)
    for key, value in before.items():
        if not any(key.startswith(p + ".") for p in expected):
            assert torch.equal(model.state_dict()[key], value)


def test_a_headless_model_says_how_to_name_the_head():
    with pytest.raises(HeadNotFoundError, match="name the head layer yourself"):
        find_heads(HeadlessNet(), 32)


def test_core_messages_name_no_command_line_flags():
    """Typed errors carry the facts; the CLI adds its flags and the window its controls."""
    import re
    from pathlib import Path

    import headswap_gui.core as core

    offenders = []
    for source in Path(core.__file__).parent.glob("*.py"):
        for number, line in enumerate(source.read_text().splitlines(), 1):
            if re.search(r"[\"'][^\"']*--(arch|trust|download|head-path|hidden|head|resume|force)\b", line):
                offenders.append(f"{source.name}:{number}: {line.strip()}")
    assert not offenders, offenders


def test_a_named_head_path_is_used_and_checked():
    model = SequentialNet()
    assert [h.path for h in find_heads(model, 32, head_paths=["net.3"])] == ["net.3"]
    with pytest.raises(HeadError, match="no layer 'net.9'"):
        find_heads(model, 32, head_paths=["net.9"])
    with pytest.raises(HeadError, match="not a Linear"):
        find_heads(model, 32, head_paths=["net.1"])


def test_a_swapped_mlp_head_is_found_as_one_head_and_remembers_its_design():
    model = SequentialNet()
    spec = HeadSpec("mlp", (12, 8), activation="gelu", dropout=0.2, norm="layernorm")
    replace_head(model, 9, spec, input_size=32)
    heads = find_heads(model, 32)
    assert [(h.path, h.out_features, h.in_features) for h in heads] == [("net.4", 9, 6)]
    assert built_heads(model) == {"net.4": spec}
    assert HeadSpec.from_dict(spec.to_dict()) == spec


def test_replacement_keeps_device_dtype_and_mode():
    model = UnderscoreNet().double().train()
    replace_head(model, 4, HeadSpec("mlp", (8,)), input_size=16)
    assert model._fc.training
    assert all(p.dtype == torch.float64 for p in model._fc.parameters())
    model.eval()
    replace_head(model, 4, input_size=16)
    assert not model._fc.training


def test_conv_heads_get_conv_layers_and_parameter_counts_match():
    head = build_head(512, 10, HeadSpec("mlp", (64,), norm="batchnorm"), conv=True)
    assert isinstance(head[0], nn.Conv2d) and isinstance(head[-1], nn.Conv2d)
    assert count_head_params(512, 10, HeadSpec("mlp", (64,), norm="batchnorm"), conv=True) == sum(
        p.numel() for p in head.parameters()
    )
    assert count_head_params(1280, 10, HeadSpec()) == 1280 * 10 + 10


def test_bad_head_specs_are_explained():
    with pytest.raises(HeadError, match="design"):
        HeadSpec("transformer")
    with pytest.raises(HeadError, match="dropout"):
        HeadSpec(dropout=1.5)
    with pytest.raises(HeadError, match="hidden"):
        HeadSpec("mlp", ())


def test_empty_builds_do_not_allocate():
    import torchvision

    model = build_empty(lambda: torchvision.models.resnet18())
    assert all(p.device.type == "meta" for p in model.parameters())
