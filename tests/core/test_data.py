"""Scanning, splitting and serving image folders, on real files written into tmp_path."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from headswap_gui.core.data import (
    AUGMENT_PRESETS,
    DatasetInfo,
    ImageDataset,
    SplitInfo,
    build_transform,
    scan_image_folder,
    split_samples,
)
from headswap_gui.core.errors import DataError, FlatImageFolderError, HeadswapError
from headswap_gui.core.preprocessing import Preprocessing

SMALL = Preprocessing(input_size=32, resize_size=36)
WHITE_RGB = (255, 255, 255)


def write_image(path: Path, value: int = 128, size: tuple[int, int] = (12, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def make_folder(root: Path, counts: dict[str, int], suffix: str = ".png") -> Path:
    for name, count in counts.items():
        for index in range(count):
            write_image(root / name / f"img_{index:03d}{suffix}", value=index)
    return root


def reasons_by_name(info: DatasetInfo) -> dict[str, str]:
    return {Path(skipped.path).name: skipped.reason for skipped in info.skipped}


# --- scanning --------------------------------------------------------------------------


def test_scan_finds_classes_samples_and_sizes(tmp_path):
    root = make_folder(tmp_path / "data", {"dog": 3, "cat": 2})
    write_image(root / "dog" / "nested" / "deeper" / "extra.jpg", size=(30, 20))

    info = scan_image_folder(root)

    assert info.root == str(root)
    assert info.class_names == ("cat", "dog")
    assert info.counts == (2, 4)
    assert info.skipped == () and info.predefined_split is None
    assert [Path(s.path).relative_to(root).as_posix() for s in info.samples] == [
        "cat/img_000.png",
        "cat/img_001.png",
        "dog/img_000.png",
        "dog/img_001.png",
        "dog/img_002.png",
        "dog/nested/deeper/extra.jpg",
    ]
    assert [s.label for s in info.samples] == [0, 0, 1, 1, 1, 1]
    sizes = info.size_summary
    assert (sizes.min_width, sizes.min_height) == (12, 10)
    assert (sizes.max_width, sizes.max_height) == (30, 20)
    text = info.summary()
    assert "6 images in 2 classes" in text and "cat" in text and "dog" in text


def test_class_order_is_code_point_order_like_torchvision(tmp_path):
    root = make_folder(tmp_path / "data", {name: 1 for name in ["b", "B", "a", "10", "9", "_x"]})
    info = scan_image_folder(root)
    assert list(info.class_names) == ["10", "9", "B", "_x", "a", "b"]
    assert list(info.class_names) == ImageFolder(str(root)).classes


def test_bad_files_are_skipped_with_reasons(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "data", {"cat": 2, "dog": 2})
    cat, dog = root / "cat", root / "dog"
    (cat / "empty.png").write_bytes(b"")
    noise = write_image(cat / "cut.png", size=(64, 64)).read_bytes()
    (cat / "cut.png").write_bytes(noise[: len(noise) // 2])
    damaged = bytearray(noise)
    damaged[200:400] = bytes(b ^ 0xFF for b in damaged[200:400])
    (cat / "damaged.png").write_bytes(bytes(damaged))
    (dog / "letter.jpg").write_text("Dear Sir, this is not a photo.")
    (dog / "noise.png").write_bytes(np.random.default_rng(1).bytes(500))
    (dog / "notes.txt").write_text("labels checked by hand")
    (dog / ".DS_Store").write_bytes(b"\x00\x01")
    write_image(dog / ".thumbnails" / "hidden.png")
    write_image(root / "loose.png")
    Image.new("L", (100, 100)).save(dog / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64)

    info = scan_image_folder(root)

    assert info.counts == (2, 2)
    assert reasons_by_name(info) == {
        "empty.png": "zero bytes",
        "cut.png": "truncated",
        "damaged.png": "corrupt",
        "letter.jpg": "not an image",
        "noise.png": "not an image",
        "notes.txt": "not an image",
        "huge.png": "too large (decompression bomb)",
        "loose.png": "not in a class folder",
    }
    assert "8 files skipped" in info.summary()


def test_symlink_loops_end(tmp_path):
    root = make_folder(tmp_path / "data", {"cat": 2, "dog": 1})
    try:
        os.symlink(root / "dog", root / "dog" / "loop")  # dog/loop/loop/... would never end
        os.symlink(root, root / "cat" / "up")  # back to the root: already visited
        os.symlink(root / "dog", root / "cat" / "dogs too")  # already walked as a class
    except OSError:
        pytest.skip("this system does not allow symlinks")
    info = scan_image_folder(root)
    assert info.counts == (2, 1) and info.skipped == ()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file_is_skipped(tmp_path):
    root = make_folder(tmp_path / "data", {"cat": 1, "dog": 1})
    secret = write_image(root / "cat" / "secret.png")
    secret.chmod(0)
    try:
        assert reasons_by_name(scan_image_folder(root)) == {"secret.png": "unreadable"}
    finally:
        secret.chmod(0o644)


def test_non_ascii_names(tmp_path):
    root = make_folder(tmp_path / "données", {"café": 1, "日本": 1})
    write_image(root / "café" / "ñandú über.png")
    info = scan_image_folder(root)
    assert info.class_names == ("café", "日本")
    assert info.counts == (2, 1)
    assert any(s.path.endswith("ñandú über.png") for s in info.samples)


def test_progress_is_reported_to_the_end(tmp_path):
    root = make_folder(tmp_path / "data", {"a": 20, "b": 20})
    calls: list[tuple[int, int]] = []
    scan_image_folder(root, on_progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 40) and calls[-1] == (40, 40)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_train_val_folders_are_the_predefined_split(tmp_path):
    root = tmp_path / "data"
    make_folder(root / "train", {"cat": 3, "dog": 2})
    make_folder(root / "val", {"cat": 1, "dog": 1})
    write_image(root / "test" / "cat" / "ignored.png")

    info = scan_image_folder(root)

    assert info.class_names == ("cat", "dog")
    assert info.counts == (4, 3)
    split = info.predefined_split
    assert split is not None and split.source == "folders"
    assert split.val_fraction is None and split.seed is None
    assert [(Path(s.path).parent.parent.name, s.label) for s in split.train] == [
        ("train", 0), ("train", 0), ("train", 0), ("train", 1), ("train", 1)
    ]
    assert [(Path(s.path).parent.parent.name, s.label) for s in split.val] == [
        ("val", 0), ("val", 1)
    ]
    assert split_samples(info, val_fraction=0.5, seed=3) == split
    assert "5 train, 2 val" in info.summary()


def test_train_val_with_different_classes_is_refused(tmp_path):
    root = tmp_path / "data"
    make_folder(root / "train", {"cat": 1, "dog": 1})
    make_folder(root / "val", {"cat": 1, "bird": 1})
    with pytest.raises(DataError, match=r"only in train: dog; only in val: bird"):
        scan_image_folder(root)


def test_empty_val_class_is_named(tmp_path):
    root = tmp_path / "data"
    make_folder(root / "train", {"cat": 1, "dog": 1})
    make_folder(root / "val", {"cat": 1})
    (root / "val" / "dog").mkdir()
    with pytest.raises(DataError, match=r"'val/dog'.*no usable images \(it is empty\)"):
        scan_image_folder(root)


def test_missing_folder_and_file_are_refused(tmp_path):
    with pytest.raises(DataError, match="not found.*one subfolder per class"):
        scan_image_folder(tmp_path / "nowhere")
    file = write_image(tmp_path / "photo.png")
    with pytest.raises(DataError, match="not a folder"):
        scan_image_folder(file)


@pytest.mark.parametrize("classes", [{}, {"only": 2}])
def test_fewer_than_two_classes_is_refused(tmp_path, classes):
    root = make_folder(tmp_path / "data", classes)
    root.mkdir(exist_ok=True)
    with pytest.raises(DataError, match=f"has {len(classes)} class folder.*at least 2 are needed"):
        scan_image_folder(root)


def test_images_without_class_folders_are_a_flat_folder(tmp_path):
    root = tmp_path / "holiday"
    images = [write_image(root / name, value=i) for i, name in enumerate(["b.jpg", "a.png", "c.PNG"])]
    (root / "notes.txt").write_text("not an image")
    (root / ".thumbs").mkdir()  # hidden: not a class folder
    with pytest.raises(FlatImageFolderError) as caught:
        scan_image_folder(root)
    error = caught.value
    assert isinstance(error, DataError)  # callers that only know DataError still catch it
    assert error.folder == str(root.absolute())
    assert error.images == tuple(str(path.absolute()) for path in sorted(images, key=lambda p: p.name))
    assert str(error) == (
        f"{root.absolute()} holds 3 images but no class folders: make one subfolder per class "
        "(e.g. cats/, dogs/) and put each class's images in it."
    )


def test_class_without_usable_images_is_named(tmp_path):
    root = make_folder(tmp_path / "data", {"cat": 2, "dog": 2})
    (root / "emu").mkdir()
    with pytest.raises(DataError, match=r"'emu'.*no usable images \(it is empty\)"):
        scan_image_folder(root)
    (root / "emu" / "bad.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"'emu'.*no usable images \(1 zero bytes\)"):
        scan_image_folder(root)


# --- splitting -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder_info(tmp_path_factory) -> DatasetInfo:
    counts = {"a": 20, "b": 10, "c": 2, "d": 1}
    root = make_folder(tmp_path_factory.mktemp("split") / "data", counts)
    return scan_image_folder(root)


def test_split_is_stratified(folder_info):
    split = split_samples(folder_info, val_fraction=0.2, seed=0)
    val_counts = [sum(s.label == label for s in split.val) for label in range(4)]
    assert val_counts == [4, 2, 1, 0]  # at least one when possible, never a whole class
    assert split.source == "random" and split.val_fraction == 0.2 and split.seed == 0
    train_paths = {s.path for s in split.train}
    assert not train_paths & {s.path for s in split.val}
    assert len(split.train) + len(split.val) == len(folder_info.samples)


def test_split_is_reproducible_and_seeded(folder_info):
    first = split_samples(folder_info, seed=7)
    assert split_samples(folder_info, seed=7) == first
    assert split_samples(folder_info, seed=8).val != first.val


def test_split_round_trips_with_relative_paths(folder_info, tmp_path):
    split = split_samples(folder_info, seed=1)
    record = json.loads(json.dumps(split.to_dict(folder_info.root)))
    assert record["train"][0][0] == "a/" + Path(split.train[0].path).name
    assert SplitInfo.from_dict(record, folder_info.root) == split

    moved = Path(shutil.copytree(folder_info.root, tmp_path / "moved"))
    restored = SplitInfo.from_dict(record, moved)
    assert [Path(s.path).relative_to(moved) for s in restored.val] == [
        Path(s.path).relative_to(folder_info.root) for s in split.val
    ]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_fraction_out_of_range_is_refused(folder_info, fraction):
    with pytest.raises(HeadswapError, match="between 0 and 1"):
        split_samples(folder_info, val_fraction=fraction)


# --- transforms and dataset ------------------------------------------------------------


def test_eval_transform_shape_and_normalisation():
    transform = build_transform(Preprocessing())
    white = transform(Image.new("RGB", (300, 200), WHITE_RGB))
    assert type(white) is torch.Tensor and white.shape == (3, 224, 224)
    expected = [(1 - m) / s for m, s in zip(Preprocessing().mean, Preprocessing().std)]
    assert torch.allclose(white[:, 100, 100], torch.tensor(expected), atol=1e-4)
    bicubic = Preprocessing(interpolation="bicubic").with_input_size(64)
    assert build_transform(bicubic)(Image.new("RGB", (10, 90))).shape == (3, 64, 64)


def test_train_none_is_deterministic_and_equals_eval():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    train = build_transform(SMALL, "none", train=True)
    assert torch.equal(train(image), train(image))
    assert torch.equal(train(image), build_transform(SMALL)(image))


@pytest.mark.parametrize("augment", AUGMENT_PRESETS[1:])
def test_augmentations_are_random_with_the_right_shape(augment):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    transform = build_transform(SMALL, augment, train=True)
    torch.manual_seed(0)
    outputs = [transform(image) for _ in range(4)]
    assert all(out.shape == (3, 32, 32) and out.dtype == torch.float32 for out in outputs)
    assert any(not torch.equal(outputs[0], out) for out in outputs[1:])
    # Augmentation is for training only.
    assert torch.equal(build_transform(SMALL, augment)(image), build_transform(SMALL)(image))


def test_unknown_presets_are_refused():
    with pytest.raises(HeadswapError, match="preset 'wild'; choose one of none, light, strong"):
        build_transform(SMALL, "wild", train=True)
    with pytest.raises(HeadswapError, match="Unknown interpolation 'sinc'"):
        build_transform(Preprocessing(interpolation="sinc"))


def test_dataset_loads_pickles_and_batches(tmp_path):
    # Pickling is what a "spawn" DataLoader worker needs; starting one costs seconds.
    root = make_folder(tmp_path / "data", {"a": 3, "b": 2})
    info = scan_image_folder(root)
    dataset = ImageDataset(info.samples, build_transform(SMALL, "light", train=True))
    assert len(dataset) == 5
    image, label = dataset[4]
    assert image.shape == (3, 32, 32) and label == 1

    clone = pickle.loads(pickle.dumps(dataset))
    eval_dataset = pickle.loads(pickle.dumps(ImageDataset(info.samples, build_transform(SMALL))))
    assert clone.samples == dataset.samples
    assert torch.equal(eval_dataset[0][0], ImageDataset(info.samples, build_transform(SMALL))[0][0])

    images, labels = next(iter(DataLoader(dataset, batch_size=5)))
    assert images.shape == (5, 3, 32, 32) and labels.tolist() == [0, 0, 0, 1, 1]


def test_dataset_reports_files_removed_after_the_scan(tmp_path):
    root = make_folder(tmp_path / "data", {"a": 1, "b": 1})
    info = scan_image_folder(root)
    Path(info.samples[0].path).unlink()
    with pytest.raises(DataError, match="scan the folder again"):
        ImageDataset(info.samples, build_transform(SMALL))[0]
