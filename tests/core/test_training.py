"""The training engine end to end: real tiny models, real PNG folders, real threads."""

from __future__ import annotations

import json
import math
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from headswap_gui.core import runs, sources
from headswap_gui.core.data import DatasetInfo, scan_image_folder, split_samples
from headswap_gui.core.devices import autocast_dtype, is_out_of_memory, list_devices, resolve_device, training_threads
from headswap_gui.core.errors import HeadswapError, RunExistsError, RunSettingsError
from headswap_gui.core.events import EpochMetrics, Note, Progress, RunFinished, RunStarted, StepMetrics
from headswap_gui.core.heads import HeadSpec
from headswap_gui.core.training import (
    AUX_LOSS_WEIGHT,
    TrainConfig,
    build_eval_loader,
    compute_loss,
    evaluate,
    fit,
)

COLOURS = ((220, 40, 40), (40, 200, 40), (40, 40, 220))
BASE = dict(epochs=3, batch_size=8, lr=0.01, image_size=32, device="cpu", seed=0)


def write_colour_folder(root: Path, per_class: int = 20, size: int = 24, seed: int = 0) -> Path:
    """Three easily separable classes: noisy red, green and blue squares."""
    rng = np.random.default_rng(seed)
    for label, colour in enumerate(COLOURS):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.array(colour)[None, None] + rng.normal(0, 30, (size, size, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> DatasetInfo:
    return scan_image_folder(write_colour_folder(tmp_path_factory.mktemp("colours")))


def tiny_model(seed: int = 0, spec: HeadSpec | None = None) -> sources.LoadedModel:
    """timm's test EfficientNet (BatchNorm, 5 stages) with a fresh 3-class head."""
    torch.manual_seed(seed)
    loaded = sources.load_model("timm:test_efficientnet")
    sources.swap_head(loaded, 3, spec)
    return loaded


def train(loaded, dataset, config, run_dir=None, **kwargs) -> list:
    events = list(fit(loaded, dataset, config, run_dir, **kwargs))
    check_event_order(events)
    return events


def check_event_order(events: list) -> None:
    assert isinstance(events[0], RunStarted)
    assert isinstance(events[-1], RunFinished)
    assert sum(isinstance(e, RunStarted) for e in events) == 1
    assert sum(isinstance(e, RunFinished) for e in events) == 1
    started = events[0]
    for index, event in enumerate(events):
        if isinstance(event, EpochMetrics):  # the last step of every finished epoch is reported
            steps = [e for e in events[:index] if isinstance(e, StepMetrics) and e.epoch == event.epoch]
            assert steps and steps[-1].step == started.steps_per_epoch


def epochs_of(events: list) -> list[EpochMetrics]:
    return [e for e in events if isinstance(e, EpochMetrics)]


def finished(events: list) -> RunFinished:
    return events[-1]


def comparable(metrics: list[EpochMetrics]) -> list[tuple]:
    return [(m.epoch, m.train_loss, m.train_accuracy, m.val_loss, m.val_accuracy, m.lr, m.is_best) for m in metrics]


def backbone_state(model: torch.nn.Module, head: str) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(head + ".")}


# --- learning ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cache", ["auto", "off"])
def test_head_training_learns_and_leaves_the_backbone_bit_identical(dataset, cache):
    loaded = tiny_model()
    before = backbone_state(loaded.model, "classifier")
    head_before = loaded.model.classifier.weight.detach().clone()
    events = train(loaded, dataset, TrainConfig(**BASE, cache_features=cache))
    assert finished(events).reason == "completed"
    assert events[0].features_cached is (cache == "auto")
    assert epochs_of(events)[-1].val_accuracy >= 0.8  # chance is 1/3
    after = backbone_state(loaded.model, "classifier")
    assert after.keys() == before.keys() and any("running_mean" in k for k in after)
    for name, tensor in before.items():  # parameters AND BatchNorm buffers
        assert torch.equal(tensor, after[name]), name
    assert not torch.equal(head_before, loaded.model.classifier.weight)


def test_full_fine_tuning_learns(dataset):
    events = train(tiny_model(), dataset, TrainConfig(**BASE, freeze="full", augment="light"))
    assert finished(events).reason == "completed"
    assert finished(events).best_val_accuracy >= 0.8


def test_feature_cache_is_used_only_when_exact_and_matches_uncached_training(dataset):
    # fp32: the claim is that the cache changes nothing; under "auto" a CPU with bf16 matrix
    # units runs the feature pass in bf16 (test_the_feature_pass_in_bf16_...)
    cached = train(tiny_model(), dataset, TrainConfig(**BASE, precision="fp32"))
    uncached = train(tiny_model(), dataset, TrainConfig(**BASE, cache_features="off", precision="fp32"))
    augmented = train(tiny_model(), dataset, TrainConfig(**{**BASE, "epochs": 1}, augment="light"))
    assert not any("bf16" in e.message for e in cached if isinstance(e, Note))
    assert cached[0].features_cached and not uncached[0].features_cached and not augmented[0].features_cached
    progress = [e for e in cached if isinstance(e, Progress)]
    assert progress and progress[-1].done == progress[-1].total == len(dataset.samples)
    assert cached.index(progress[0]) > 0  # after RunStarted, before the first step
    assert not any(isinstance(e, Progress) for e in uncached)
    # same batches in the same order through the same frozen backbone: the same run
    for a, b in zip(epochs_of(cached), epochs_of(uncached)):
        assert a.train_loss == pytest.approx(b.train_loss, abs=1e-4)
        assert a.val_loss == pytest.approx(b.val_loss, abs=1e-4)
        assert a.val_accuracy == b.val_accuracy


def test_models_whose_output_is_not_the_head_output_train_without_a_cache(dataset):
    torch.manual_seed(0)
    loaded = sources.load_model("torchvision:squeezenet1_1")  # 1×1-conv head, pooled afterwards
    sources.swap_head(loaded, 3)
    events = train(loaded, dataset, TrainConfig(**{**BASE, "epochs": 1}))
    assert not events[0].features_cached
    assert any(isinstance(e, Note) and "not cached" in e.message for e in events)
    assert finished(events).reason == "completed"


# --- run folders -------------------------------------------------------------------------------


def test_a_run_folder_reloads_with_identical_logits(dataset, tmp_path):
    spec = HeadSpec(design="mlp", hidden=(16,), norm="batchnorm", dropout=0.1)
    loaded = tiny_model(spec=spec)
    run_dir = tmp_path / "run"
    events = train(loaded, dataset, TrainConfig(**BASE), run_dir)
    assert events[0].features_cached  # an MLP head built by headswap caches its input too
    assert finished(events).reason == "completed"

    reloaded = sources.load_model(str(run_dir))
    assert reloaded.class_names == dataset.class_names
    assert reloaded.preprocessing.input_size == 32
    split = split_samples(dataset, 0.2, 0)
    loader = build_eval_loader(split.val, reloaded.preprocessing, batch_size=16)
    images, _ = next(iter(loader))
    loaded.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(images), reloaded.model(images))

    metadata = json.loads((run_dir / "headswap.json").read_text())
    best = finished(events).best_epoch
    assert metadata["best_epoch"] == best and metadata["finished"] == "completed"
    assert metadata["class_names"] == list(dataset.class_names)
    assert TrainConfig.from_dict(metadata["training"]) == TrainConfig(**BASE)
    assert len(metadata["epochs"]) == 3 and metadata["seed"] == 0 and "torch" in metadata["versions"]
    assert metadata["split"]["val"] == split.to_dict(dataset.root)["val"]
    rows = (run_dir / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,train_loss") and len(rows) == 4
    for name in (metadata["weights_file"], metadata["checkpoint_file"]):
        assert (run_dir / name).read_bytes()[:1] != b"\x80"  # no pickle anywhere
    assert not list(run_dir.glob(".*.tmp"))
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        [".headswap.lock", "headswap.json", "metrics.csv", f"model-e{best:04d}.safetensors", "last-e0003.safetensors"]
    )  # earlier epochs' files are gone once a later commit replaced them


def test_a_folder_that_holds_a_run_is_not_overwritten(dataset, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_model(), dataset, TrainConfig(**{**BASE, "epochs": 1}), run_dir)
    with pytest.raises(RunExistsError, match="already holds a training run"):
        fit(tiny_model(), dataset, TrainConfig(**BASE), run_dir)


# --- stop, resume, divergence ------------------------------------------------------------------


def train_until_stopped(loaded, dataset, config, run_dir, stop_at: tuple[int, int]) -> list:
    """Iterate ``fit`` on a worker thread; the main thread sets the stop flag when the worker
    reports step ``stop_at`` = (epoch, step)."""
    stop, reached, released = threading.Event(), threading.Event(), threading.Event()
    events: list = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            for event in fit(loaded, dataset, config, run_dir, stop=stop):
                events.append(event)
                if isinstance(event, StepMetrics) and (event.epoch, event.step) == stop_at:
                    reached.set()
                    released.wait(timeout=60)
        except BaseException as error:  # noqa: BLE001 - re-raised on the test thread
            errors.append(error)
            reached.set()

    worker = threading.Thread(target=consume)
    worker.start()
    assert reached.wait(timeout=60)
    stop.set()
    released.set()
    worker.join(timeout=60)
    assert not worker.is_alive() and not errors
    check_event_order(events)
    return events


@pytest.mark.parametrize(
    ("freeze", "stop_epoch"),
    [("head", 2), ("gradual", 2), ("gradual", 3)],
    ids=["head-cached", "gradual-before-unfreeze", "gradual-after-unfreeze"],
)
def test_stop_mid_epoch_then_resume_continues_exactly(dataset, tmp_path, freeze, stop_epoch):
    config = TrainConfig(
        **BASE, freeze=freeze, unfreeze_after=1, augment="none" if freeze == "head" else "light",
        max_step_events_per_second=1e9,  # report every step, so the stop point is exact
    )
    whole = train(tiny_model(), dataset, config, tmp_path / "whole")

    stopped_dir = tmp_path / "stopped"
    stopped = train_until_stopped(tiny_model(), dataset, config, stopped_dir, stop_at=(stop_epoch, 2))
    step_index = next(i for i, e in enumerate(stopped) if isinstance(e, StepMetrics) and (e.epoch, e.step) == (stop_epoch, 2))
    assert [type(e) for e in stopped[step_index + 1 :]] == [RunFinished]  # no further step
    end = finished(stopped)
    assert end.reason == "stopped" and end.best_epoch is not None and end.best_epoch < stop_epoch
    assert runs.read_checkpoint(stopped_dir / f"last-e{stop_epoch - 1:04d}.safetensors").epoch == stop_epoch - 1
    assert sources.load_model(str(stopped_dir)).class_names == dataset.class_names  # best epoch loads

    resumed = train(sources.load_model(str(stopped_dir)), dataset, config, stopped_dir, resume=True)
    assert resumed[0].start_epoch == stop_epoch
    assert [m.epoch for m in epochs_of(resumed)] == list(range(stop_epoch, 4))
    if freeze == "gradual" and stop_epoch == 2:
        assert any(isinstance(e, Note) and "unfrozen" in e.message for e in resumed)
    assert comparable(epochs_of(resumed)) == comparable(epochs_of(whole)[stop_epoch - 1 :])
    # optimizer state (AdamW exp_avg / exp_avg_sq / step), weights and schedule continued exactly
    a, b = (load_file(str(folder / "last-e0003.safetensors")) for folder in (tmp_path / "whole", stopped_dir))
    assert a.keys() == b.keys() and any(k.endswith(".exp_avg") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = runs.read_checkpoint(stopped_dir / "last-e0003.safetensors").state
    assert state["epoch"] == 3 and state["phase"] == ("full" if freeze == "gradual" else "head")
    metadata = json.loads((stopped_dir / "headswap.json").read_text())
    assert [r["epoch"] for r in metadata["epochs"]] == [1, 2, 3] and metadata["finished"] == "completed"


def test_stop_before_the_first_step(dataset, tmp_path):
    stop = threading.Event()
    stop.set()
    events = train(tiny_model(), dataset, TrainConfig(**BASE), tmp_path / "run", stop=stop)
    assert finished(events).reason == "stopped" and finished(events).best_epoch is None
    assert not any(isinstance(e, StepMetrics) for e in events)


def test_a_diverging_run_keeps_the_best_checkpoint(dataset, tmp_path):
    run_dir = tmp_path / "run"
    config = TrainConfig(**{**BASE, "epochs": 1})
    train(tiny_model(), dataset, config, run_dir)
    best = load_file(str(run_dir / "model-e0001.safetensors"))

    exploding = replace(config, lr=1e30, epochs=3)
    with pytest.raises(RunSettingsError, match="lr: 0.01 in the run, 1e\\+30 now"):
        fit(sources.load_model(str(run_dir)), dataset, exploding, run_dir, resume=True)
    manifest = json.loads((run_dir / "headswap.json").read_text())  # as if the user edited the record
    manifest["training"]["lr"] = 1e30
    (run_dir / "headswap.json").write_text(json.dumps(manifest))
    events = train(sources.load_model(str(run_dir)), dataset, exploding, run_dir, resume=True)
    end = finished(events)
    assert end.reason == "diverged" and "learning rate" in end.message
    assert end.best_epoch == 1 and end.saved_epochs == 1
    after = load_file(str(run_dir / json.loads((run_dir / "headswap.json").read_text())["weights_file"]))
    assert all(torch.equal(best[k], after[k]) for k in best)
    reloaded = sources.load_model(str(run_dir))
    with torch.no_grad():
        assert torch.isfinite(reloaded.model(torch.randn(2, 3, 32, 32))).all()
    assert json.loads((run_dir / "headswap.json").read_text())["finished"] == "diverged"


def test_a_fresh_diverging_run_ends_without_a_best_epoch(dataset):
    events = train(tiny_model(), dataset, TrainConfig(**{**BASE, "lr": 1e30}, freeze="full"))
    assert finished(events).reason == "diverged" and finished(events).best_epoch is None


def test_early_stopping(dataset):
    # an lr far below float32 resolution leaves the weights, and so the val loss, unchanged
    config = TrainConfig(**{**BASE, "epochs": 8, "lr": 1e-12, "schedule": "constant"}, patience=1)
    events = train(tiny_model(), dataset, config)
    end = finished(events)
    assert end.reason == "early-stopped" and "patience 1" in end.message
    assert [m.is_best for m in epochs_of(events)] == [True, False] and end.best_epoch == 1


# --- determinism, data, config -----------------------------------------------------------------


def test_seeded_cpu_runs_repeat_exactly(dataset):
    config = TrainConfig(
        **{**BASE, "epochs": 2}, freeze="last-k", last_k=2, augment="strong", label_smoothing=0.1, class_weights=True
    )
    first = train(tiny_model(seed=3), dataset, config)
    second = train(tiny_model(seed=3), dataset, config)
    assert comparable(epochs_of(first)) == comparable(epochs_of(second))
    other_seed = train(tiny_model(seed=3), dataset, replace(config, seed=1))
    assert comparable(epochs_of(other_seed)) != comparable(epochs_of(first))


def test_bad_files_are_skipped_and_the_good_ones_train(tmp_path):
    root = write_colour_folder(tmp_path / "salted", per_class=12)
    (root / "class_0" / "empty.png").write_bytes(b"")
    (root / "class_1" / "notes.jpg").write_text("not an image")
    good = (root / "class_2" / "000.png").read_bytes()
    (root / "class_2" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "readme.txt").write_text("stray file")
    info = scan_image_folder(root)
    assert len(info.samples) == 36
    assert {Path(s.path).name for s in info.skipped} >= {"empty.png", "notes.jpg", "truncated.png"}
    events = train(tiny_model(), info, TrainConfig(**{**BASE, "epochs": 2}))
    assert events[0].train_size + events[0].val_size == 36
    assert finished(events).reason == "completed"


def test_the_head_must_fit_the_classes(dataset):
    torch.manual_seed(0)
    loaded = sources.load_model("timm:test_efficientnet")  # 1000 outputs
    with pytest.raises(HeadswapError, match="swap the head for one with 3 outputs first"):
        fit(loaded, dataset, TrainConfig(**BASE), None)
    events = train(loaded, dataset, TrainConfig(**{**BASE, "epochs": 1}), head_spec=HeadSpec())
    assert any(isinstance(e, Note) and "replaced the head" in e.message for e in events)
    assert loaded.model.classifier.out_features == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [("epochs", 0), ("lr", -1.0), ("freeze", "partial"), ("optimizer", "adam"), ("device", "gpu"),
     ("val_fraction", 1.0), ("precision", "fp8"), ("augment", "wild"), ("patience", 0), ("cache_features", "yes")],
)
def test_bad_settings_are_refused_with_the_field_named(field, value):
    with pytest.raises(HeadswapError, match=field):
        TrainConfig(**{field: value})


def test_config_round_trips_through_json():
    config = TrainConfig(epochs=4, grad_clip=1.0, image_size=64, patience=3, channels_last=False)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig.from_dict({**config.to_dict(), "from_a_newer_version": 1}) == config


def test_step_events_are_throttled(dataset):
    config = TrainConfig(**{**BASE, "batch_size": 1, "epochs": 2}, max_step_events_per_second=2)
    events = train(tiny_model(), dataset, config)
    steps = [e for e in events if isinstance(e, StepMetrics)]
    assert len(steps) < 2 * events[0].steps_per_epoch / 2  # far fewer than one per step
    assert all(math.isfinite(s.loss) and s.images_per_second > 0 for s in steps)
    assert all(m.eta_seconds >= 0 and m.images_per_second > 0 for m in epochs_of(events))


# --- evaluation, losses, devices ---------------------------------------------------------------


def test_evaluate_gives_per_sample_results(dataset):
    loaded = tiny_model()
    train(loaded, dataset, TrainConfig(**{**BASE, "epochs": 2}))
    split = split_samples(dataset, 0.2, 0)
    preprocessing = loaded.preprocessing.with_input_size(32)
    result = evaluate(loaded.model, build_eval_loader(split.val, preprocessing, batch_size=5), "cpu")
    n = len(split.val)
    assert result.targets.tolist() == [s.label for s in split.val]
    assert result.probabilities.shape == (n, 3) and np.allclose(result.probabilities.sum(1), 1, atol=1e-5)
    assert result.losses.shape == (n,) and result.confusion().sum() == n
    assert result.report().support.tolist() == np.bincount(result.targets, minlength=3).tolist()
    wrong = result.misclassified()
    assert all(result.predictions[i] != result.targets[i] for i in wrong)
    assert list(result.losses[wrong]) == sorted(result.losses[wrong], reverse=True)


def test_auxiliary_logits_add_to_the_loss():
    criterion = torch.nn.CrossEntropyLoss()
    targets = torch.tensor([0, 1])
    main, aux1, aux2 = torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3)
    loss, logits = compute_loss((main, aux2, aux1), targets, criterion)
    expected = criterion(main, targets) + AUX_LOSS_WEIGHT * (criterion(aux1, targets) + criterion(aux2, targets)) / 2
    assert torch.allclose(loss, expected) and logits is main
    assert torch.equal(compute_loss(main, targets, criterion)[0], criterion(main, targets))


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert training_threads(4) == 3 and training_threads(1) == 1
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert list_devices()[-1].name == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(HeadswapError, match="no CUDA GPU"):
            resolve_device("cuda:0")
    with pytest.raises(HeadswapError, match="unknown device"):
        resolve_device("tpu")


def test_an_unexpected_error_in_the_model_ends_the_run_in_words_not_a_class_name(dataset, caplog):
    loaded = tiny_model()
    calls = {"n": 0}

    def breaks_on_the_third_training_batch(module, inputs, output):
        if module.training:
            calls["n"] += 1
            if calls["n"] == 3:
                raise ValueError("shape mismatch in the user's layer")

    loaded.model.classifier.register_forward_hook(breaks_on_the_third_training_batch)
    with caplog.at_level("ERROR", logger="headswap_gui.core.training"):
        events = train(loaded, dataset, TrainConfig(**{**BASE, "epochs": 1, "cache_features": "off"}))
    end = finished(events)
    assert end.reason == "failed"
    assert "shape mismatch in the user's layer" in end.message and "ValueError" not in end.message
    assert any(record.exc_info and record.exc_info[0] is ValueError for record in caplog.records)  # the traceback is kept


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("MPS backend out of memory (MPS allocated: 1.49 GiB, other allocations: 0 bytes, max allowed: 9.07 GiB)."),
])
def test_running_out_of_device_memory_ends_the_run_with_what_to_change(dataset, error) -> None:
    """CUDA's typed error and MPS's untyped one (its text is all it has) say the same thing."""
    loaded = tiny_model()

    def runs_out_of_memory(module, inputs, output):
        if module.training:
            raise error

    loaded.model.classifier.register_forward_hook(runs_out_of_memory)
    end = finished(train(loaded, dataset, TrainConfig(**{**BASE, "epochs": 1, "cache_features": "off", "batch_size": 4})))
    assert end.reason == "failed"
    assert end.message.startswith("out of memory on cpu at batch size 4; try batch size 2"), end.message


def test_out_of_memory_is_told_from_other_runtime_errors() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GiB)"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (out of memory? no)"))
    assert not is_out_of_memory(ValueError("MPS backend out of memory"))  # only the allocator's RuntimeError
