"""The window's background jobs, as generator factories of small immutable events.

Each function returns ``factory(stop) -> iterator`` for :class:`JobManager.start`; core does
the work, these only phrase it for the window (stage texts) and package the result. Nothing
here imports torch at module level: this module is on the start-up import path.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from headswap_gui.gui.state import Evaluation

if TYPE_CHECKING:
    from headswap_gui.core.sources import LoadedModel

__all__ = [
    "HEAVY_MODULES",
    "JobDone",
    "LoadStage",
    "ModelLoadResult",
    "demo_data_events",
    "evaluation_events",
    "export_events",
    "import_modules",
    "load_model_events",
    "warm_up_events",
]

HEAVY_MODULES = (  # imported off the GUI thread at start-up, so the first paint does not wait
    "torch",
    "torchvision",
    "timm",
    "headswap_gui.core.sources",
    "headswap_gui.core.data",
    "headswap_gui.core.training",
    "headswap_gui.core.predict",
)



@dataclass(frozen=True)
class LoadStage:
    """A line for the status bar or the busy label: what the job does now."""

    text: str


@dataclass
class ModelLoadResult:
    """A loaded model with what inspection found (installed into the state by the window)."""

    loaded: LoadedModel
    heads: tuple[Any, ...]
    output_shapes: dict[str, tuple[int, ...]]
    tree: Any  # LayerRecord
    head_problem: str | None


@dataclass(frozen=True)
class JobDone:
    """The one result of a job that has a result (demo data info, an export report)."""

    value: Any


def load_model_events(
    source: str, *, download: bool = False, arch: str | None = None, trust: bool = False
) -> Callable[[threading.Event], Iterator[object]]:
    """A generator factory: load ``source``, find its heads, build its layer tree."""

    def events(stop: threading.Event) -> Iterator[object]:
        what = "Downloading (if needed) and loading" if download else "Loading"
        yield LoadStage(f"{what} {source}…")
        # timm and torchvision too: load_model imports them lazily, which would escape the lock
        import_modules(["torch", "torchvision", "timm", "headswap_gui.core.sources", "headswap_gui.core.module_tree"])
        from headswap_gui.core.module_tree import inspect_model
        from headswap_gui.core.sources import load_model

        loaded = load_model(source, arch=arch, trust=trust, download=download)
        if stop.is_set():
            return
        yield LoadStage(f"Finding the classifier head of {loaded.source} and building the layer tree…")
        inspection = inspect_model(loaded.model, loaded.preprocessing.input_size)
        if stop.is_set():
            return
        yield ModelLoadResult(
            loaded, inspection.heads, dict(inspection.output_shapes), inspection.tree, inspection.problem
        )

    return events


_import_lock = threading.Lock()


def import_modules(names: Iterable[str]) -> None:
    """Import ``names``, one thread at a time. The start-up jobs (the warm-up, the model load,
    the demo images) begin together, and two threads importing torchvision at once can fail:
    its imports are circular, so one thread may find ``torchvision.transforms`` half
    initialised ("cannot import name 'InterpolationMode'", or CPython's _DeadlockError) — 1 in
    3 tries of three such threads here. Once imported, a module costs nothing to ask for again."""
    for name in names:
        with _import_lock:
            importlib.import_module(name)


def warm_up_events(stop: threading.Event) -> Iterator[object]:
    """Import the heavy modules on a worker thread, so the window stays responsive."""
    for name in HEAVY_MODULES:
        if stop.is_set():
            return
        yield LoadStage(f"Loading {name.rsplit('.', 1)[-1]}…")
        try:
            import_modules([name])
        except ImportError:
            pass  # a missing optional module shows up where it is used
    yield JobDone(True)


def demo_data_events(directory: str | None) -> Callable[[threading.Event], Iterator[object]]:
    def events(stop: threading.Event) -> Iterator[object]:
        yield LoadStage("Preparing the digits demo images (written on first use)…")
        import_modules(["headswap_gui.core.demo_data"])
        from headswap_gui.core.demo_data import DEFAULT_DEMO_DATA_DIR, write_digits_dataset

        yield JobDone(write_digits_dataset(directory or DEFAULT_DEMO_DATA_DIR))

    return events


def evaluation_events(
    loaded: Any, dataset: Any, config: Any, model_version: int
) -> Callable[[threading.Event], Iterator[object]]:
    def events(stop: threading.Event) -> Iterator[object]:
        from headswap_gui.core.data import split_samples
        from headswap_gui.core.devices import resolve_device
        from headswap_gui.core.training import build_eval_loader, evaluate

        yield LoadStage("Evaluating the trained model on the validation images…")
        split = split_samples(dataset, config.val_fraction, config.seed)
        preprocessing = loaded.preprocessing
        if config.image_size:
            preprocessing = preprocessing.with_input_size(config.image_size)
        device = resolve_device(config.device)
        loader = build_eval_loader(split.val, preprocessing, batch_size=max(1, config.batch_size), device=device)
        result = evaluate(loaded.model, loader, device, stop=stop)
        if result is not None:
            yield Evaluation(tuple(dataset.class_names), tuple(s.path for s in split.val), result, model_version)

    return events


def export_events(loaded: Any, fmt: str, path: str, images: list[str]) -> Callable[[threading.Event], Iterator[object]]:
    def events(stop: threading.Event) -> Iterator[object]:
        yield LoadStage(f"Exporting {fmt} to {path} and checking it against PyTorch…")
        from headswap_gui.core.export import export_model

        yield JobDone(export_model(loaded, fmt, path, images or None))

    return events
