"""The map of a folder by the model's features (core/embedding.py), on real images.

The end-to-end fixture is 600 of scikit-learn's digits (60 per class), mapped with the
offline demo model (ImageNet EfficientNet-Lite0, never trained on digits) at 32 px. A map
"separates the classes" when a point's nearest neighbours on it share its class: the
11-nearest-neighbour purity in 2D (the share of each point's 10 nearest other points with
its label) is 0.1 by chance for ten balanced classes. Over five random 600-image subsets the
measured purity was 0.64 to 0.70 for t-SNE and 0.29 to 0.32 for PCA (the first two
components of 1,280 features); the test asks for 0.5 and 0.2: five times and twice chance,
with room for other CPUs' rounding below the lowest value seen.
"""

from __future__ import annotations

import csv
import dataclasses
import random
import threading
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from headswap_gui.core.data import scan_image_folder
from headswap_gui.core.demo_data import write_digits_dataset
from headswap_gui.core.embedding import (
    FEATURES_STAGE,
    NEIGHBOURS_STAGE,
    PROJECTION_STAGE,
    EmbeddingConfig,
    EmbeddingFinished,
    EmbeddingStarted,
    class_colours,
    compute_embedding,
    tsne,
    write_map_csv,
    write_map_png,
)
from headswap_gui.core.errors import DataError, HeadswapError
from headswap_gui.core.events import Note, Progress
from headswap_gui.core.heads import replace_head
from headswap_gui.core.sources import load_model

PER_CLASS = 60
IMAGE_SIZE = 32
NEIGHBOURS = 10
CHANCE = 0.1
MIN_PURITY = {"tsne": 0.5, "pca": 0.2}


def knn_purity(coordinates: np.ndarray, labels: np.ndarray, k: int = NEIGHBOURS) -> float:
    """The share of each point's ``k`` nearest other points (in 2D) that have its label."""
    distances = ((coordinates[:, None, :] - coordinates[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(distances, np.inf)
    nearest = np.argsort(distances, axis=1)[:, :k]
    return float((labels[nearest] == labels[:, None]).mean())


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("map") / "digits"
    write_digits_dataset(root)
    rng = random.Random(0)
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(folder.glob("*.png"))
        for path in sorted(set(files) - set(rng.sample(files, PER_CLASS))):
            path.unlink()
    return scan_image_folder(root)


@pytest.fixture(scope="module")
def demo():
    return load_model("demo")


@pytest.fixture(scope="module")
def mapped(digits, demo):
    return {method: list(compute_embedding(demo, digits, EmbeddingConfig(method=method, image_size=IMAGE_SIZE)))
            for method in ("tsne", "pca")}


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_the_digits_map_separates_the_classes(mapped, digits, method):
    info = mapped[method][-1].info
    assert info is not None and info.method == method and len(info) == 10 * PER_CLASS
    assert info.coordinates.shape == (10 * PER_CLASS, 2) and np.isfinite(info.coordinates).all()
    assert info.paths == tuple(s.path for s in digits.samples)
    assert (info.labels == [s.label for s in digits.samples]).all()
    purity = knn_purity(info.coordinates, info.labels)
    assert purity >= MIN_PURITY[method] > CHANCE, purity


def test_events_are_small_frozen_and_in_order(mapped):
    events = mapped["tsne"]
    assert isinstance(events[0], EmbeddingStarted) and events[0].images == 10 * PER_CLASS
    assert events[0].method == "tsne" and events[0].class_names == tuple(str(d) for d in range(10))
    assert isinstance(events[-1], EmbeddingFinished) and events[-1].reason == "completed"
    assert sum(isinstance(e, EmbeddingFinished) for e in events) == 1
    assert "mapped 600 images in 10 classes by t-SNE" in events[-1].message
    for event in events:
        assert dataclasses.is_dataclass(event) and type(event).__dataclass_params__.frozen
    stages = [e.stage for e in events if isinstance(e, Progress)]
    assert stages == sorted(stages, key=[FEATURES_STAGE, NEIGHBOURS_STAGE, PROJECTION_STAGE].index)
    for stage in (FEATURES_STAGE, NEIGHBOURS_STAGE, PROJECTION_STAGE):
        progress = [e for e in events if isinstance(e, Progress) and e.stage == stage]
        assert progress[0].done == 0 and progress[-1].done == progress[-1].total
        assert [p.done for p in progress] == sorted(p.done for p in progress)
    projecting = [e for e in events if isinstance(e, Progress) and e.stage == PROJECTION_STAGE]
    assert projecting[-1].total == 750 and all(p.rate > 0 and p.eta_seconds >= 0 for p in projecting[1:])
    features = [e for e in events if isinstance(e, Progress) and e.stage == FEATURES_STAGE]
    assert features[-1].rate > 0 and features[-1].eta_seconds == 0
    # The demo model's classes are ImageNet's, not the digits': no predictions, and it says so.
    assert events[-1].info.predicted is None and not events[-1].info.misclassified.any()
    assert any(isinstance(e, Note) and "not the folder's" in e.message for e in events)
    with pytest.raises(ValueError):
        events[-1].info.coordinates[0, 0] = 1.0  # read-only: the event crosses threads as it is


def test_a_model_with_the_folders_classes_marks_what_it_gets_wrong(digits, demo, tmp_path):
    model = replace(demo, model=load_model("demo").model, class_names=digits.class_names)
    replace_head(model.model, 10, input_size=model.preprocessing.input_size, seed=0)  # untrained: many wrong
    events = list(compute_embedding(model, digits, EmbeddingConfig(method="pca", image_size=IMAGE_SIZE)))
    info = events[-1].info
    assert info.predicted is not None and info.predicted.shape == (10 * PER_CLASS,)
    assert set(np.unique(info.predicted)) <= set(range(10))
    assert (info.misclassified == (info.predicted != info.labels)).all() and 0 < info.misclassified.sum() < len(info)
    assert f"the model gets {int(info.misclassified.sum()):,} of them wrong" in events[-1].message

    write_map_csv(tmp_path / "map.csv", info)
    with open(tmp_path / "map.csv", encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == len(info) and set(rows[0]) == {"path", "label", "predicted", "misclassified", "x", "y"}
    assert rows[0]["label"] == info.class_names[info.labels[0]]
    assert rows[0]["misclassified"] == ("yes" if info.misclassified[0] else "no")
    assert abs(float(rows[0]["x"]) - info.coordinates[0, 0]) < 1e-3 * max(1.0, abs(info.coordinates[0, 0]))
    write_map_png(tmp_path / "map.png", info, size=400)
    with Image.open(tmp_path / "map.png") as picture:
        assert picture.height == 400 and picture.width > 400
        colours = {colour for _, colour in picture.convert("RGB").getcolors(2**20)}
    assert set(class_colours(10)) <= colours  # every class drawn in its own colour


def test_stop_ends_the_map_at_the_next_check(digits, demo):
    for stage in (FEATURES_STAGE, PROJECTION_STAGE):
        stop = threading.Event()
        events = []
        for event in compute_embedding(demo, digits, EmbeddingConfig(image_size=IMAGE_SIZE, batch_size=16), stop=stop):
            events.append(event)
            if isinstance(event, Progress) and event.stage == stage:
                stop.set()
        assert isinstance(events[-1], EmbeddingFinished), stage
        assert events[-1].reason == "stopped" and events[-1].info is None
        assert sum(isinstance(e, Progress) and e.stage == stage for e in events) == 1  # the next check saw it


def test_tsne_stops_at_the_next_slice():
    x = np.random.default_rng(0).normal(size=(200, 5))
    stop = threading.Event()
    run = tsne(x, stop=stop)
    event = next(run)
    while not (event.stage == PROJECTION_STAGE and event.done > 0):
        event = next(run)
    stop.set()
    with pytest.raises(StopIteration) as end:
        next(run)  # the next slice sees the flag: no more events, no map
    assert end.value.value is None and event.done < event.total


def test_unusable_input_is_refused_before_any_work(tmp_path, demo, digits):
    run = replace(demo, source="runs/cats", metadata={"class_names": ["cat", "dog"], "dataset_root": "/data/pets"})
    with pytest.raises(DataError, match="does not match the run"):
        compute_embedding(run, digits)
    with pytest.raises(HeadswapError, match="method must be one of tsne, pca"):
        compute_embedding(demo, digits, EmbeddingConfig(method="umap"))  # type: ignore[arg-type]
    small = tmp_path / "small"
    for name in ("a", "b"):
        (small / name).mkdir(parents=True)
    Image.new("RGB", (8, 8), (9, 9, 9)).save(small / "a" / "one.png")
    Image.new("RGB", (8, 8), (99, 9, 9)).save(small / "b" / "two.png")
    with pytest.raises(DataError, match="a map needs at least 3 images"):
        compute_embedding(demo, scan_image_folder(small))


def test_class_colours_are_distinct_past_the_table():
    colours = class_colours(25)
    assert len(set(colours)) == 25 and colours[:10] == list(class_colours(10))
