"""Pretrained timm weights come from the local caches alone unless downloading is allowed, and
checkpoints load into the model's own dtype whatever precision they were saved in."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import huggingface_hub.constants
import pytest
import timm
import torch
from safetensors.torch import save_file

from headswap_gui.core.errors import SourceError, WeightsNotCachedError
from headswap_gui.core.run_manifest import read_manifest, weights_file
from headswap_gui.core.runs import save_model_folder
from headswap_gui.core.sources import cached_weight_sources, load_model, zoo_sources

TINY = "test_efficientnet"  # timm's own test model: 0.36 M parameters, weights on the Hub only
URL_ONLY = "legacy_seresnet18"  # weights published by URL, without a Hub copy


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to reach the network is recorded and refused; the list must stay empty."""
    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("the test forbids network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


@pytest.fixture
def empty_caches(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache and an empty torch hub folder; returns the former.
    huggingface_hub reads ``HF_HUB_CACHE`` at import, so its constant is set, not the variable."""
    hub_cache = tmp_path / "hf-hub"
    hub_cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return hub_cache


def _cache_on_hub(hub_cache: Path, repo_id: str, filename: str, state: dict[str, torch.Tensor]) -> Path:
    """Lay out ``state`` the way huggingface_hub caches a downloaded file."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    if filename.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, snapshot / filename)
    else:
        torch.save(state, snapshot / filename)
    return snapshot / filename


def _reference_state(name: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False).state_dict()


def _assert_same_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for key, tensor in state.items():
        assert loaded[key].dtype == tensor.dtype and torch.equal(loaded[key], tensor), key


def test_uncached_timm_weights_fail_without_touching_the_network(empty_caches, no_network):
    assert timm.models.get_pretrained_cfg(TINY).hf_hub_id  # the case under test: timm would ask the Hub
    with pytest.raises(WeightsNotCachedError) as error:
        load_model(f"timm:{TINY}@pretrained")
    message = str(error.value)
    assert f"timm:{TINY}" in message and str(empty_caches) in message and "timm/test_efficientnet.r160_in1k" in message
    assert no_network == []


def test_uncached_url_weights_name_the_torch_cache(empty_caches, no_network):
    with pytest.raises(WeightsNotCachedError) as error:
        load_model(f"timm:{URL_ONLY}@pretrained")
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    assert str(checkpoints) in str(error.value)
    assert no_network == []


@pytest.mark.parametrize("filename", ["model.safetensors", "pytorch_model.bin"])
def test_cached_hub_weights_load_offline(empty_caches, no_network, filename):
    state = _reference_state(TINY)
    _cache_on_hub(empty_caches, timm.models.get_pretrained_cfg(TINY).hf_hub_id, filename, state)
    loaded = load_model(f"timm:{TINY}@pretrained")
    _assert_same_weights(loaded.model, state)
    assert len(loaded.class_names) == 1000 and loaded.preprocessing.input_size == 160
    assert no_network == []


def test_the_safetensors_file_wins_over_the_pickle(empty_caches, no_network):
    state = _reference_state(TINY)
    repo_id = timm.models.get_pretrained_cfg(TINY).hf_hub_id
    safe = _cache_on_hub(empty_caches, repo_id, "model.safetensors", state)
    torch.save({k: torch.zeros_like(v) for k, v in state.items()}, safe.parent / "pytorch_model.bin")
    _assert_same_weights(load_model(f"timm:{TINY}@pretrained").model, state)
    assert no_network == []


def test_cached_url_weights_load_from_the_torch_cache(empty_caches, no_network):
    state = _reference_state(URL_ONLY)
    url = timm.models.get_pretrained_cfg(URL_ONLY).url
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(state, checkpoints / os.path.basename(url))
    _assert_same_weights(load_model(f"timm:{URL_ONLY}@pretrained").model, state)
    assert no_network == []


def test_a_damaged_cached_file_is_explained(empty_caches, no_network):
    repo_id = timm.models.get_pretrained_cfg(TINY).hf_hub_id
    damaged = _cache_on_hub(empty_caches, repo_id, "model.safetensors", {"x": torch.zeros(1)})
    damaged.write_bytes(b"\x00" * 20)
    with pytest.raises(SourceError, match="cannot be loaded") as error:
        load_model(f"timm:{TINY}@pretrained")
    assert not isinstance(error.value, WeightsNotCachedError) and str(damaged) in str(error.value)
    assert no_network == []


def test_architectures_without_published_weights_say_so(no_network):
    untrained = next(
        name for name in timm.list_models()
        if not (timm.models.get_pretrained_cfg(name).hf_hub_id or timm.models.get_pretrained_cfg(name).url)
    )
    with pytest.raises(SourceError, match="publishes no pretrained weights") as error:
        load_model(f"timm:{untrained}@pretrained")
    assert not isinstance(error.value, WeightsNotCachedError)
    assert no_network == []


# --- which zoo entries have cached weights ---------------------------------------------------------


def test_cached_weights_are_found_in_both_caches_without_the_network(empty_caches, no_network):
    """A Hub file, a torch hub checkpoint of a timm URL and of a torchvision DEFAULT weight:
    each marks its entry; a Hub folder without the weights file, and everything else, do not."""
    state = _reference_state(TINY)
    _cache_on_hub(empty_caches, timm.models.get_pretrained_cfg(TINY).hf_hub_id, "model.safetensors", state)
    stub = empty_caches / f"models--{timm.models.get_pretrained_cfg('resnet18').hf_hub_id.replace('/', '--')}"
    (stub / "refs").mkdir(parents=True)  # a download that never finished
    (stub / "refs" / "main").write_text("0123456789abcdef0123456789abcdef01234567")
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save({"x": torch.zeros(1)}, checkpoints / os.path.basename(timm.models.get_pretrained_cfg(URL_ONLY).url))
    import torchvision

    resnet18_file = os.path.basename(torchvision.models.get_model_weights("resnet18").DEFAULT.url)
    torch.save({"x": torch.zeros(1)}, checkpoints / resnet18_file)

    found = cached_weight_sources(zoo_sources())
    assert found == {"demo", f"timm:{TINY}", f"timm:{URL_ONLY}", "torchvision:resnet18"}
    assert cached_weight_sources(["torchvision:resnet50", "timm:resnet18", "hf:nothing", "/no/file.pt"]) == set()
    _assert_same_weights(load_model(f"timm:{TINY}@pretrained").model, state)  # a tick means it loads offline
    assert no_network == []


def test_no_caches_at_all_mark_only_the_demo(tmp_path, monkeypatch, no_network):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "missing-hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "missing-torch"))
    assert cached_weight_sources(zoo_sources()) == {"demo"}
    assert no_network == []


# --- checkpoint dtypes -----------------------------------------------------------------------------


def _half_state(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in _reference_state(TINY).items()}


def _assert_upcast(model: torch.nn.Module, half: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    for key, tensor in half.items():
        if tensor.is_floating_point():
            assert loaded[key].dtype == torch.float32, key
            assert torch.equal(loaded[key], tensor.float()), key
        else:
            assert loaded[key].dtype == tensor.dtype and torch.equal(loaded[key], tensor), key
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_half_precision_checkpoints_load_in_the_models_dtype(tmp_path, dtype, suffix):
    half = _half_state(dtype)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in half.items()}, path)
    else:
        torch.save(half, path)
    loaded = load_model(str(path), arch=f"timm:{TINY}")
    _assert_upcast(loaded.model, half)
    assert loaded.model.bn1.num_batches_tracked.dtype == torch.int64


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_model_folder_with_half_precision_weights_loads_in_the_models_dtype(tmp_path, dtype):
    save_model_folder(tmp_path / "model", load_model(f"timm:{TINY}"))
    half = _half_state(dtype)
    save_file({k: v.contiguous() for k, v in half.items()}, tmp_path / "model" / weights_file(read_manifest(tmp_path / "model")))
    _assert_upcast(load_model(str(tmp_path / "model")).model, half)
