"""The head learns while the feature cache fills: real tiny models, real PNG folders."""

from __future__ import annotations

import threading

import pytest
import torch
from test_training import check_event_order, comparable, epochs_of, tiny_model, write_colour_folder

from headswap_gui.core.data import DatasetInfo, scan_image_folder
from headswap_gui.core.devices import cpu_has_bf16_matrix_units
from headswap_gui.core.events import CacheValidation, EpochMetrics, Note, Progress, RunFinished
from headswap_gui.core.run_manifest import read_manifest
from headswap_gui.core.streaming import FIRST_CHUNK, chunk_ends
from headswap_gui.core.training import TrainConfig, fit

BASE = dict(epochs=3, batch_size=8, lr=0.01, image_size=32, device="cpu", seed=0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> DatasetInfo:
    """150 images, 120 for training: the cache pass has chunk ends at 64 and 96."""
    return scan_image_folder(write_colour_folder(tmp_path_factory.mktemp("colours"), per_class=50))


def run(dataset: DatasetInfo, config: TrainConfig, run_dir=None, **kwargs) -> tuple[list, torch.nn.Module]:
    loaded = tiny_model()
    events = list(fit(loaded, dataset, config, run_dir, **kwargs))
    check_event_order(events)
    return events, loaded.model


def streamed(events: list) -> list[CacheValidation]:
    return [e for e in events if isinstance(e, CacheValidation)]


def test_chunk_ends_grow_geometrically_and_stop_short_of_the_full_cache():
    assert chunk_ends(120) == [FIRST_CHUNK, 96]
    assert chunk_ends(FIRST_CHUNK) == []  # a cache no larger than one chunk goes straight to the epochs
    ends = chunk_ends(100_000)
    assert all(b > a for a, b in zip(ends, ends[1:])) and ends[-1] < 100_000
    assert len(ends) < 20  # so the head's passes cost a bounded multiple of one pass over the cache


def test_validation_accuracy_appears_during_the_cache_pass(dataset):
    events, _ = run(dataset, TrainConfig(**BASE))
    during = streamed(events)
    first_epoch = next(i for i, e in enumerate(events) if isinstance(e, EpochMetrics))
    # at the first batch that reaches each chunk end (batches do not stop at chunk ends)
    assert [end <= e.cached < end + BASE["batch_size"] for e, end in zip(during, (FIRST_CHUNK, 96))] == [True, True]
    assert len(during) == 2
    assert all(events.index(e) < first_epoch for e in during)  # before the cache is full
    assert all(e.total == 120 for e in during)
    assert during[-1].val_accuracy > 0.5  # chance is 1/3: the head already learnt from part of the data
    cache_progress = [e for e in events if isinstance(e, Progress)]
    assert cache_progress[-1].done == cache_progress[-1].total == 150
    assert all(e.rate is not None and e.eta_seconds is not None for e in cache_progress[1:])
    assert events[-1].reason == "completed" and epochs_of(events)[-1].val_accuracy >= 0.8


def test_a_streamed_run_repeats_exactly_for_a_seed(dataset):
    first, first_model = run(dataset, TrainConfig(**BASE))
    second, second_model = run(dataset, TrainConfig(**BASE))
    assert [(e.cached, e.train_loss, e.val_loss, e.val_accuracy) for e in streamed(first)] == [
        (e.cached, e.train_loss, e.val_loss, e.val_accuracy) for e in streamed(second)
    ]
    assert comparable(epochs_of(first)) == comparable(epochs_of(second))
    for (name, a), (_, b) in zip(first_model.state_dict().items(), second_model.state_dict().items()):
        assert torch.equal(a, b), name


def test_without_streaming_the_cached_run_is_the_uncached_one(dataset):
    """``stream_cache=False``: the head waits for the full cache, and the run is exactly the one
    that runs the whole model every epoch (same batches, same frozen backbone)."""
    plain, _ = run(dataset, TrainConfig(**BASE, stream_cache=False, precision="fp32"))  # fp32: see test_training
    uncached, _ = run(dataset, TrainConfig(**BASE, cache_features="off", precision="fp32"))
    assert plain[0].features_cached and not uncached[0].features_cached
    assert not streamed(plain)
    for a, b in zip(epochs_of(plain), epochs_of(uncached)):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4, abs=1e-5)
        assert a.val_accuracy == b.val_accuracy


def test_a_stop_while_streaming_leaves_the_head_as_it_was_and_resume_repeats_the_run(dataset, tmp_path):
    loaded = tiny_model()
    head_before = {k: v.clone() for k, v in loaded.model.classifier.state_dict().items()}
    stop = threading.Event()
    events = []
    for event in fit(loaded, dataset, TrainConfig(**BASE), tmp_path / "run", stop=stop):
        events.append(event)
        if isinstance(event, CacheValidation):
            stop.set()  # in the middle of the cache pass, after the head has learnt from a chunk
    assert isinstance(events[-1], RunFinished) and events[-1].reason == "stopped"
    assert "caching" in events[-1].message
    for name, tensor in loaded.model.classifier.state_dict().items():
        assert torch.equal(tensor, head_before[name]), name
    assert read_manifest(tmp_path / "run")["epochs"] == []

    resumed = list(fit(tiny_model(), dataset, TrainConfig(**BASE), tmp_path / "run", resume=True))
    uninterrupted, _ = run(dataset, TrainConfig(**BASE))
    assert resumed[-1].reason == "completed"
    assert comparable(epochs_of(resumed)) == comparable(epochs_of(uninterrupted))


@pytest.mark.skipif(not cpu_has_bf16_matrix_units(), reason="this CPU has no bf16 matrix units (AMX)")
def test_the_feature_pass_in_bf16_says_so_repeats_exactly_and_learns_as_in_fp32(dataset):
    auto, _ = run(dataset, TrainConfig(**BASE))
    again, _ = run(dataset, TrainConfig(**BASE))
    exact, _ = run(dataset, TrainConfig(**BASE, precision="fp32"))
    notes = [e.message for e in auto if isinstance(e, Note)]
    assert any("feature pass runs in bf16" in n for n in notes), notes
    assert not any("bf16" in e.message for e in exact if isinstance(e, Note))
    assert comparable(epochs_of(auto)) == comparable(epochs_of(again))
    for a, b in zip(epochs_of(auto), epochs_of(exact)):  # the head sees features a few bits apart
        assert a.val_accuracy == pytest.approx(b.val_accuracy, abs=0.1)
        assert a.train_loss == pytest.approx(b.train_loss, rel=0.05, abs=0.02)
