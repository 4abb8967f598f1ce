"""Layer records in words: sizes as plain numbers, never Python reprs, and a replaced head
that names its type once."""

from __future__ import annotations

import re

import pytest
import timm
import torch
import torchvision
from torch import nn

from headswap_gui.core.construction import build_empty
from headswap_gui.core.heads import HeadSpec, find_heads, replace_head
from headswap_gui.core.module_tree import build_module_tree, describe_layer

# What a Python repr leaks into text: "(256,)", "(3, 3)", "[7, 7]", "kernel_size=…", torch types.
RAW_REPR = re.compile(r"\(\d+,|\[\d|\w=\(|torch\.Size|Parameter containing|tensor\(")


@pytest.mark.parametrize(
    ("layer", "text"),
    [
        (nn.LayerNorm(256), "LayerNorm 256"),
        (nn.LayerNorm((7, 7)), "LayerNorm 7×7"),
        (nn.Linear(512, 1000), "Linear 512 → 1000"),
        (nn.Conv2d(3, 64, 7), "Conv2d 3 → 64 (7×7)"),
        (nn.Conv2d(512, 10, (1, 1)), "Conv2d 512 → 10 (1×1)"),
        (nn.BatchNorm1d(128), "BatchNorm1d 128"),
        (nn.GroupNorm(1, 64), "GroupNorm 64 in 1 group"),
        (nn.Dropout(0.25), "Dropout p=0.25"),
        (nn.ReLU(), "ReLU"),
    ],
)
def test_layers_are_described_with_plain_numbers(layer: nn.Module, text: str) -> None:
    assert describe_layer(layer) == text


def test_a_whole_model_is_not_described_by_its_feature_width() -> None:
    assert describe_layer(timm.create_model("test_efficientnet")) == "EfficientNet"  # not "EfficientNet 256"


@pytest.mark.parametrize(
    "build",
    [
        lambda: torchvision.models.swin_t(),  # LayerNorm, shifted-window attention
        lambda: torchvision.models.convnext_tiny(),  # LayerNorm2d, 7×7 depthwise convolutions
        lambda: torchvision.models.googlenet(aux_logits=True, init_weights=False),
        lambda: timm.create_model("vit_tiny_patch16_224"),
    ],
    ids=["swin_t", "convnext_tiny", "googlenet", "vit_tiny"],
)
def test_no_record_of_a_real_model_shows_a_python_repr(build) -> None:
    model = build_empty(build)
    tree = build_module_tree(model, 224, heads=[], output_shapes={})
    leaks = {r.path: r.description for r in tree.walk() if RAW_REPR.search(r.description)}
    assert not leaks
    norms = [r.description for r in tree.walk() if "Norm" in r.type_name and r.own_params]
    assert norms and all(re.fullmatch(r"\w+ \d+(×\d+)*( in \d+ groups?)?", text) for text in norms), norms


def test_the_tree_describes_a_layernorm_as_its_width() -> None:
    model = nn.Sequential(nn.Linear(8, 256), nn.LayerNorm(256), nn.Linear(256, 3))
    tree = build_module_tree(model, 8, heads=[], output_shapes={})
    assert tree.find("1").description == "LayerNorm 256"
    assert tree.find("2").description == "Linear 256 → 3"


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 512), nn.ReLU())
        self.fc = nn.Linear(512, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


def test_a_replaced_linear_head_names_its_type_once() -> None:
    model = _Net()
    replace_head(model, 10, HeadSpec(), find_heads(model, 8), 8)
    head = find_heads(model, 8)[0]
    assert (head.path, head.type_name) == ("fc", "Linear")  # was "Linear (Linear)"
    tree = build_module_tree(model, 8, heads=[head], output_shapes={})
    assert tree.find("fc").description == "Linear 512 → 10"
    replace_head(model, 4, HeadSpec("mlp", (16,), "gelu", 0.0, "layernorm"), [head], 8)
    mlp = find_heads(model, 8)[0]
    assert mlp.type_name == "Sequential (MLP 16, gelu, layernorm)"  # the design adds something here
    tree = build_module_tree(model, 8, heads=[mlp], output_shapes={})
    assert [c.description for c in tree.find("fc").children] == [
        "Linear 512 → 16", "LayerNorm 16", "GELU", "Linear 16 → 4",
    ]


def _counts(record) -> dict[str, tuple[int, int, int]]:
    out = {record.path: (record.own_params, record.total_params, record.trainable_params)}
    for child in record.children:
        out.update(_counts(child))
    return out


def _counted_per_subtree(model: nn.Module) -> dict[str, tuple[int, int, int]]:
    """What each subtree holds, each tensor once: the definition the tree's counts follow."""
    out = {}
    for path, module in model.named_modules(remove_duplicate=False):
        every = list(module.parameters())
        out[path] = (sum(p.numel() for p in module.parameters(recurse=False)), sum(p.numel() for p in every),
                     sum(p.numel() for p in every if p.requires_grad))
    return out


def test_parameter_counts_take_each_tensor_once_per_subtree_with_or_without_shared_weights() -> None:
    plain = nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.ReLU(), nn.Linear(8, 3)))
    plain[0].weight.requires_grad_(False)
    tied = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    tied[1].weight = tied[0].weight  # tied input and output embeddings
    block = nn.Linear(3, 3)
    reused = nn.Sequential(block, nn.ReLU(), block)  # one module in two places
    for model in (plain, tied, reused):
        counts = _counts(build_module_tree(model, output_shapes={}))
        expected = _counted_per_subtree(model)
        assert counts == {path: expected[path] for path in counts}  # a reused module shows once
    assert build_module_tree(tied, output_shapes={}).total_params == 40  # not 80
