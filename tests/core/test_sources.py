"""Model sources: the offline demo, zoo names, weight files, pickles, model folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from headswap_gui.core.errors import NeedsArchitectureError, NeedsTrustError, SourceError, WeightsNotCachedError
from headswap_gui.core.heads import HeadSpec
from headswap_gui.core.predict import predict_images
from headswap_gui.core.runs import save_model_folder
from headswap_gui.core.sources import load_model, swap_head

SKLEARN_IMAGES = Path(__import__("sklearn.datasets").datasets.__file__).parent / "images"


@pytest.fixture(scope="module")
def demo():
    return load_model("demo")


def test_demo_recognises_real_photos(demo, tmp_path):
    from PIL import Image
    from skimage import data

    coffee = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(coffee)
    predictions = predict_images(demo, [SKLEARN_IMAGES / "flower.jpg", SKLEARN_IMAGES / "china.jpg", coffee], top_k=1)
    assert [p.labels[0] for p in predictions] == ["daisy", "palace", "espresso"]


def test_demo_carries_its_preprocessing_and_names(demo):
    assert demo.preprocessing.mean == (0.5, 0.5, 0.5) and demo.preprocessing.std == (0.5, 0.5, 0.5)
    assert demo.preprocessing.input_size == 224
    assert len(demo.class_names) == 1000
    assert [h.path for h in demo.find_heads()] == ["classifier"]


def test_unknown_sources_are_explained():
    with pytest.raises(SourceError, match="torchvision has no classification model 'resnet5'"):
        load_model("torchvision:resnet5")
    with pytest.raises(SourceError, match="timm has no architecture"):
        load_model("timm:not_a_model")
    with pytest.raises(SourceError, match="unknown model source"):
        load_model("nonsense")


def test_uncached_pretrained_weights_ask_for_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsNotCachedError, match="not in the local torch cache"):
        load_model("torchvision:resnet18@DEFAULT")
    with pytest.raises(SourceError, match="IMAGENET1K_V1"):
        load_model("torchvision:resnet18@NOPE")


def test_cached_pretrained_weights_load_offline_with_class_names(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    reference = torchvision.models.resnet18()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / os.path.basename(weights.url))
    loaded = load_model("torchvision:resnet18@DEFAULT")
    assert loaded.class_names[0] == "tench" and len(loaded.class_names) == 1000
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(loaded.model(x), reference.eval()(x))


@pytest.fixture
def resnet_state():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=1000).state_dict()


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model", "module_prefix", "safetensors"])
def test_state_dict_files_load_with_arch(tmp_path, resnet_state, wrap):
    if wrap == "safetensors":
        path = tmp_path / "weights.safetensors"
        save_file({k: v.contiguous() for k, v in resnet_state.items()}, path)
    else:
        content = {
            "bare": resnet_state,
            "state_dict": {"state_dict": resnet_state, "epoch": 3},
            "model": {"model": resnet_state},
            "module_prefix": {f"module.{k}": v for k, v in resnet_state.items()},
        }[wrap]
        path = tmp_path / "weights.pth"
        torch.save(content, path)
    loaded = load_model(str(path), arch="torchvision:resnet18")
    assert torch.equal(loaded.model.fc.weight, resnet_state["fc.weight"])


def test_a_fine_tuned_checkpoint_resizes_the_head(tmp_path):
    model = torchvision.models.resnet18(num_classes=5)
    torch.save(model.state_dict(), tmp_path / "five.pt")
    loaded = load_model(str(tmp_path / "five.pt"), arch="torchvision:resnet18")
    assert loaded.model.fc.out_features == 5
    assert any("5 classes" in note for note in loaded.notes)


def test_a_mismatched_state_dict_names_the_tensors(tmp_path, resnet_state):
    del resnet_state["layer1.0.conv1.weight"]
    resnet_state["layer2.0.bn1.weight"] = torch.zeros(3)
    torch.save(resnet_state, tmp_path / "bad.pt")
    with pytest.raises(SourceError) as error:
        load_model(str(tmp_path / "bad.pt"), arch="torchvision:resnet18")
    assert "layer1.0.conv1.weight" in str(error.value) and "layer2.0.bn1.weight" in str(error.value)


def test_full_module_pickles_need_trust(tmp_path):
    model = torchvision.models.squeezenet1_1(num_classes=3)
    torch.save(model, tmp_path / "full.pt")
    with pytest.raises(NeedsTrustError, match="arbitrary code"):
        load_model(str(tmp_path / "full.pt"))
    loaded = load_model(str(tmp_path / "full.pt"), trust=True)
    assert [h.path for h in loaded.find_heads()] == ["classifier.1"]


def test_corrupted_and_missing_files_are_explained(tmp_path):
    (tmp_path / "broken.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(SourceError, match="not a readable PyTorch file"):
        load_model(str(tmp_path / "broken.pt"), arch="torchvision:resnet18")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(SourceError, match="safetensors"):
        load_model(str(tmp_path / "broken.safetensors"), arch="torchvision:resnet18")
    with pytest.raises(NeedsArchitectureError, match="which architecture"):
        save_file({"x": torch.zeros(1)}, tmp_path / "w.safetensors")
        load_model(str(tmp_path / "w.safetensors"))
    with pytest.raises(SourceError, match="no such file"):
        load_model(str(tmp_path / "missing.pt"))


def test_a_model_folder_rebuilds_the_exact_model(tmp_path):
    loaded = load_model("torchvision:mobilenet_v3_small")
    swap_head(loaded, 4, HeadSpec("mlp", (32,), norm="layernorm", dropout=0.1), class_names=["a", "b", "c", "d"])
    save_model_folder(tmp_path / "run", loaded)
    again = load_model(str(tmp_path / "run"))
    x = torch.randn(2, 3, 96, 96)
    assert torch.equal(loaded.model.eval()(x), again.model(x))
    assert again.class_names == ("a", "b", "c", "d")
    assert again.architecture == "torchvision:mobilenet_v3_small"
    assert not list(tmp_path.joinpath("run").glob("*.tmp"))


def test_googlenet_swap_covers_the_aux_heads_in_train_mode():
    loaded = load_model("torchvision:googlenet")
    heads = swap_head(loaded, 3)
    assert sorted(h.role for h in heads) == ["auxiliary", "auxiliary", "main"]
    loaded.model.train()
    outputs = loaded.model(torch.randn(2, 3, 224, 224))
    assert [tuple(o.shape) for o in outputs] == [(2, 3)] * 3


def test_hugging_face_models_load_and_swap_consistently(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=3, id2label={0: "cat", 1: "dog", 2: "fox"}, label2id={"cat": 0, "dog": 1, "fox": 2},
    )
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(tmp_path / "vit")
    loaded = load_model(f"hf:{tmp_path / 'vit'}")
    assert loaded.class_names == ("cat", "dog", "fox")
    assert loaded.preprocessing.input_size == 32 and loaded.preprocessing.mean == (0.5, 0.5, 0.5)
    assert [h.path for h in loaded.find_heads()] == ["classifier"]
    swap_head(loaded, 2, class_names=["yes", "no"])
    assert loaded.model.config.num_labels == 2 and loaded.model.config.id2label == {0: "yes", 1: "no"}
    loaded.model.save_pretrained(tmp_path / "swapped")
    again = transformers.ViTForImageClassification.from_pretrained(tmp_path / "swapped")
    assert again.classifier.out_features == 2


def test_a_broken_pickle_is_described_without_the_unpicklers_internals(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"\x80\x02.")  # a pickle whose unpickler fails with IndexError("pop from empty list")
    with pytest.raises(SourceError) as caught:
        load_model(str(path))
    assert "unrecognised or truncated content" in str(caught.value) and "pop from" not in str(caught.value)
