"""Image folders: scan and verify them, split them, and serve them to a DataLoader.

A scan opens every image once, up front, so a bad file is reported by name before training
starts instead of crashing a worker in epoch 3. The split is stratified and seeded and can be
stored with a run (paths relative to the folder), so a run can be reproduced or resumed on
exactly the same images.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode, v2

from headswap_gui.core.errors import DataError, FlatImageFolderError, HeadswapError
from headswap_gui.core.images import ImageTooLargeError, is_image_file, load_image, verify_image
from headswap_gui.core.preprocessing import Preprocessing

AUGMENT_PRESETS = ("none", "light", "strong")
"""Training augmentation presets, weakest first. "none" is deterministic (see
:func:`build_transform`)."""

SplitSource = Literal["random", "folders"]
ProgressCallback = Callable[[int, int], None]

_TRAIN_DIR, _VAL_DIR = "train", "val"
EXCLUDE_FILE = "headswap-exclude.txt"
"""The text file at an image folder's root that lists images to leave out of training: one
path per line, relative to the folder, "/"-separated; blank lines and lines starting with
"#" are ignored. It is a file beside the images, not a setting, so the window, the command
line and a copied folder all leave out the same images."""
MAX_ASPECT_RATIO = 4
"""Beyond this long:short ratio the eval transform crops before it resizes (the centre crop
discards the rest anyway)."""
_PROGRESS_INTERVAL_S = 0.1
_CHUNK = 16


@dataclass(frozen=True)
class SkippedFile:
    """A file that a scan left out, and why (e.g. "corrupt", "zero bytes")."""

    path: str
    reason: str


@dataclass(frozen=True)
class ImageSample:
    """One usable image: its absolute path and its class index."""

    path: str
    label: int


@dataclass(frozen=True)
class SizeSummary:
    """Image sizes in pixels (upright), to warn about images far smaller than the input."""

    min_width: int
    min_height: int
    median_width: int
    median_height: int
    max_width: int
    max_height: int

    def describe(self) -> str:
        return (
            f"{self.min_width}×{self.min_height} to {self.max_width}×{self.max_height} "
            f"(median {self.median_width}×{self.median_height})"
        )


@dataclass(frozen=True)
class SplitInfo:
    """Which samples train and which validate.

    ``source`` is "folders" when the folder had ``train/`` and ``val/`` (then
    ``val_fraction`` and ``seed`` are ``None``), "random" when :func:`split_samples` drew it.
    """

    train: tuple[ImageSample, ...]
    val: tuple[ImageSample, ...]
    val_fraction: float | None
    seed: int | None
    source: SplitSource

    def to_dict(self, root: str | os.PathLike[str]) -> dict[str, Any]:
        """JSON-ready form with paths relative to ``root`` ("/"-separated), so the record
        stays valid when the folder is moved or opened on another OS."""
        return {
            "source": self.source,
            "val_fraction": self.val_fraction,
            "seed": self.seed,
            "train": [[_relative(s.path, root), s.label] for s in self.train],
            "val": [[_relative(s.path, root), s.label] for s in self.val],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], root: str | os.PathLike[str]) -> SplitInfo:
        """Rebuild a split stored by :meth:`to_dict`, resolving paths against ``root``.

        Files are not checked here; a missing one is reported when it is loaded.
        """
        base = Path(root).absolute()

        def samples(rows: list[list[Any]]) -> tuple[ImageSample, ...]:
            return tuple(
                ImageSample(str(base.joinpath(*PurePosixPath(rel).parts)), int(label))
                for rel, label in rows
            )

        fraction = data.get("val_fraction")
        seed = data.get("seed")
        return cls(
            train=samples(data["train"]),
            val=samples(data["val"]),
            val_fraction=None if fraction is None else float(fraction),
            seed=None if seed is None else int(seed),
            source=data["source"],
        )


@dataclass(frozen=True)
class DatasetInfo:
    """The result of :func:`scan_image_folder`.

    ``class_names[i]`` is the name of label ``i``, which is also output ``i`` of the model.
    ``samples`` holds every usable image (train and val together when the folder has a
    predefined split); ``skipped`` lists what was left out and why.
    """

    root: str
    class_names: tuple[str, ...]
    samples: tuple[ImageSample, ...]
    skipped: tuple[SkippedFile, ...]
    predefined_split: SplitInfo | None
    size_summary: SizeSummary | None

    @property
    def counts(self) -> tuple[int, ...]:
        """Usable images per class, in class order."""
        per_label = Counter(sample.label for sample in self.samples)
        return tuple(per_label[label] for label in range(len(self.class_names)))

    def summary(self) -> str:
        """A few lines for the CLI and the window's data page."""
        lines = [
            f"{len(self.samples):,} images in {len(self.class_names)} classes from {self.root}"
        ]
        if self.predefined_split is not None:
            lines.append(
                f"Predefined split from train/ and val/: {len(self.predefined_split.train):,} "
                f"train, {len(self.predefined_split.val):,} val"
            )
        width = max(len(name) for name in self.class_names) if self.class_names else 0
        lines += [
            f"  {name:<{width}}  {count:,}" for name, count in zip(self.class_names, self.counts)
        ]
        if self.size_summary is not None:
            lines.append(f"Image sizes: {self.size_summary.describe()}")
        if self.skipped:
            reasons = Counter(skipped.reason for skipped in self.skipped)
            detail = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
            lines.append(f"{len(self.skipped):,} files skipped: {detail}")
        return "\n".join(lines)


def scan_image_folder(
    root: str | os.PathLike[str], on_progress: ProgressCallback | None = None
) -> DatasetInfo:
    """Find and verify every image in a class-per-subfolder tree.

    Two layouts are accepted: ``root/<class>/...`` and ``root/train/<class>/...`` plus
    ``root/val/<class>/...`` (same class folders in both; used as the predefined split,
    other top-level folders such as ``test/`` are then ignored). Class folders are searched
    recursively. Class names are the folder names sorted with Python's ``sorted()``, i.e.
    by Unicode code point ("B" before "a", "10" before "9"), the same order as torchvision's
    ``ImageFolder``; label ``i`` and model output ``i`` mean ``class_names[i]``.

    Every image is fully decoded once. Files that cannot be used are listed in ``skipped``
    with a reason: "not an image", "zero bytes", "truncated", "corrupt", "unreadable",
    "too large (decompression bomb)", "not in a class folder" or "excluded" (listed in the
    folder's :data:`EXCLUDE_FILE`, see :func:`read_excluded`). Names starting with "." are
    ignored silently, and symlinked folders are followed only once, so loops end.

    ``on_progress(done, total)`` is called from this thread, throttled, ending with
    ``(total, total)``. Raises :class:`DataError` when the folder cannot be used, the subclass
    :class:`FlatImageFolderError` when it holds images but no class folders.
    """
    base = Path(root).expanduser().absolute()
    if not base.exists():
        raise DataError(
            f"Image folder not found: {base}. Choose an existing folder that holds one "
            "subfolder per class."
        )
    if not base.is_dir():
        raise DataError(
            f"{base} is a file, not a folder. Choose the folder that holds one subfolder "
            "per class."
        )
    if not os.access(base, os.R_OK | os.X_OK):
        raise DataError(f"Cannot read {base}: permission denied. Choose a folder you can read.")
    excluded = read_excluded(base)
    skipped: list[SkippedFile] = []
    top_dirs = _subfolders(base, skipped, control_file=EXCLUDE_FILE)
    if _TRAIN_DIR in top_dirs and _VAL_DIR in top_dirs:
        parts = {part: _subfolders(base / part, skipped) for part in (_TRAIN_DIR, _VAL_DIR)}
        class_names = _split_class_names(base, parts[_TRAIN_DIR], parts[_VAL_DIR])
        layout = [(f"{part}/", base / part) for part in (_TRAIN_DIR, _VAL_DIR)]
    else:
        class_names = sorted(top_dirs)
        if not class_names:
            _refuse_flat_folder(base, skipped)
        _require_two_classes(base, class_names)
        layout = [("", base)]

    # Real paths of every folder walked or about to be walked as a class: a link to one of
    # them from inside another class (or back up the tree) must not be walked again.
    class_folders = [
        (prefix, name, folder / name) for prefix, folder in layout for name in class_names
    ]
    _require_distinct_class_folders(base, class_folders)
    visited = {os.path.realpath(path) for path in [base, *(f for _, f in layout)]}
    visited.update(os.path.realpath(path) for _, _, path in class_folders)
    candidates: list[tuple[str, str, str]] = []  # (part prefix, class name, path)
    for prefix, name, path in class_folders:
        for file in _files_under(path, visited, skipped):
            if _relative(file, base) in excluded:
                skipped.append(SkippedFile(file, "excluded"))  # not even opened: the user said so
            else:
                candidates.append((prefix, name, file))

    results = _verify_all([path for _, _, path in candidates], on_progress)
    label_of = {name: label for label, name in enumerate(class_names)}
    found: dict[tuple[str, str], list[ImageSample]] = {}
    sizes: list[tuple[int, int]] = []
    owner = _owning_classes(candidates)
    for (prefix, name, path), result in zip(candidates, results):
        first = owner[os.path.realpath(path)]
        if first != name:  # one file linked into two classes would train under both labels
            skipped.append(SkippedFile(path, f"same file as in class '{first}'"))
            continue
        if isinstance(result, str):
            skipped.append(SkippedFile(path, result))
            continue
        found.setdefault((prefix, name), []).append(ImageSample(path, label_of[name]))
        sizes.append(result)

    for prefix, name, path in class_folders:
        if not found.get((prefix, name)):
            raise DataError(
                f"Class folder '{prefix}{name}' in {base} has no usable images"
                f"{_skipped_note(skipped, path)}. Add images to it or remove it."
            )
    per_part = [
        tuple(sample for name in class_names for sample in found[(prefix, name)])
        for prefix, _ in layout
    ]
    predefined = (
        SplitInfo(per_part[0], per_part[1], None, None, "folders") if len(layout) == 2 else None
    )
    return DatasetInfo(
        root=str(base),
        class_names=tuple(class_names),
        samples=tuple(sample for part in per_part for sample in part),
        skipped=tuple(skipped),
        predefined_split=predefined,
        size_summary=_summarise_sizes(sizes),
    )


def split_samples(info: DatasetInfo, val_fraction: float = 0.2, seed: int = 0) -> SplitInfo:
    """Split ``info`` into train and validation samples, stratified by class.

    Returns ``info.predefined_split`` when the folder had ``train/`` and ``val/``.
    Otherwise each class contributes about ``val_fraction`` of its images to validation,
    at least one when it has two or more (so every class is measured) and never all of them.
    Each class is shuffled by its own generator seeded with ``seed`` and its name, so the
    split depends only on the seed and the files, and adding images to one class does not
    reshuffle the others.
    """
    if info.predefined_split is not None:
        return info.predefined_split
    if not 0.0 < val_fraction < 1.0:
        raise HeadswapError(
            f"Validation fraction {val_fraction} is out of range; use a value between 0 and "
            "1, e.g. 0.2 for 20%."
        )
    by_label: dict[int, list[ImageSample]] = {}
    for sample in info.samples:
        by_label.setdefault(sample.label, []).append(sample)
    val_paths: set[str] = set()
    for label, samples in by_label.items():
        ordered = sorted(samples, key=lambda sample: sample.path)
        random.Random(f"{seed}:{info.class_names[label]}").shuffle(ordered)
        n_val = min(max(round(len(ordered) * val_fraction), 1), len(ordered) - 1)
        val_paths.update(sample.path for sample in ordered[:n_val])
    return SplitInfo(
        train=tuple(s for s in info.samples if s.path not in val_paths),
        val=tuple(s for s in info.samples if s.path in val_paths),
        val_fraction=val_fraction,
        seed=seed,
        source="random",
    )


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """``(image tensor, label)`` pairs for a DataLoader.

    Holds only paths, labels and the transform, so it pickles cheaply into ``spawn``
    DataLoader workers.
    """

    def __init__(self, samples: Sequence[ImageSample], transform: Callable[[Image.Image], Any]):
        self.samples = tuple(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        try:
            image = load_image(sample.path)
        except (OSError, SyntaxError, ValueError) as exc:
            raise DataError(
                f"Could not read {sample.path} ({exc}). It may have changed or been removed "
                "since the folder was scanned; scan the folder again."
            ) from exc
        return self.transform(image), sample.label


def build_transform(
    preprocessing: Preprocessing, augment: str = "none", train: bool = False
) -> v2.Compose:
    """PIL image -> normalised float tensor ``(3, input_size, input_size)``.

    Evaluation (and training with "none") is the model's own eval pipeline: resize the
    short side, centre-crop, scale to [0, 1], normalise. It is deterministic, which lets the
    trainer compute frozen-backbone features once and reuse them every epoch. "light" adds a
    mild random crop and horizontal flip; "strong" adds a wider crop, colour jitter, small
    rotations and random erasing. Augmentation only applies when ``train`` is true.
    """
    if augment not in AUGMENT_PRESETS:
        raise HeadswapError(
            f"Unknown augmentation preset '{augment}'; choose one of {', '.join(AUGMENT_PRESETS)}."
        )
    interpolation = _interpolation(preprocessing.interpolation)
    size = preprocessing.input_size
    to_tensor = [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(preprocessing.mean), std=list(preprocessing.std)),
        v2.ToPureTensor(),  # a plain Tensor, not a tv_tensors.Image, reaches the model
    ]
    if not train or augment == "none":
        return v2.Compose(
            [
                CropExtremeAspect(),
                v2.Resize(preprocessing.resize_size, interpolation=interpolation, antialias=True),
                v2.CenterCrop(size),
                *to_tensor,
            ]
        )
    if augment == "light":
        return v2.Compose(
            [
                v2.RandomResizedCrop(size, scale=(0.7, 1.0), interpolation=interpolation),
                v2.RandomHorizontalFlip(),
                *to_tensor,
            ]
        )
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.35, 1.0), interpolation=interpolation),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05),
            v2.RandomRotation(15, interpolation=interpolation),
            *to_tensor,
            v2.RandomErasing(p=0.25),  # after Normalize, so erased pixels are mean-grey
        ]
    )


class CropExtremeAspect:
    """Centre-crop the long side of an image more than :data:`MAX_ASPECT_RATIO` times its
    short side, before the resize.

    Resizing the short side of a 1×300,000 strip to 256 px would make a 256×76,800,000 image
    (tens of GB) only for the centre crop to throw nearly all of it away; cropping first keeps
    memory bounded by the resize target. Images within the ratio pass untouched, so every
    ordinary image is transformed bit for bit as before. A class (not a lambda) so it pickles
    into spawned DataLoader workers.
    """

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        short, long = min(width, height), max(width, height)
        if long <= MAX_ASPECT_RATIO * short:
            return image
        keep = MAX_ASPECT_RATIO * short
        if width > height:
            left = (width - keep) // 2
            return image.crop((left, 0, left + keep, height))
        top = (height - keep) // 2
        return image.crop((0, top, width, top + keep))


def _interpolation(name: str) -> InterpolationMode:
    try:
        return InterpolationMode(name.lower())
    except ValueError:
        choices = ", ".join(mode.value for mode in InterpolationMode)
        raise HeadswapError(
            f"Unknown interpolation '{name}' in the model's preprocessing; use one of {choices}."
        ) from None


def read_excluded(root: str | os.PathLike[str]) -> frozenset[str]:
    """The relative paths ("/"-separated) that ``root``'s :data:`EXCLUDE_FILE` lists, empty
    when there is none. Raises :class:`DataError` when the file cannot be read as UTF-8 text."""
    path = Path(root) / EXCLUDE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return frozenset()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"Cannot read the exclusion list {path} ({exc}). It must be UTF-8 text with one image path per "
            "line; fix or remove it."
        ) from exc
    lines = (line.strip() for line in text.splitlines())
    return frozenset(PurePosixPath(line).as_posix() for line in lines if line and not line.startswith("#"))


def _subfolders(folder: Path, skipped: list[SkippedFile], control_file: str | None = None) -> list[str]:
    """Visible subfolder names of ``folder``; visible files there are not in a class, except
    ``control_file`` (headswap's own, e.g. the exclusion list)."""
    names = []
    for entry in _entries(folder, skipped):
        if entry.is_dir():
            names.append(entry.name)
        elif entry.name == control_file:
            continue
        else:
            skipped.append(SkippedFile(entry.path, "not in a class folder"))
    return names


def _entries(folder: Path, skipped: list[SkippedFile]) -> list[os.DirEntry[str]]:
    """Visible entries of ``folder`` sorted by name; an unreadable folder is skipped."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError:
        skipped.append(SkippedFile(str(folder), "unreadable"))
        return []


def _files_under(folder: Path, visited: set[str], skipped: list[SkippedFile]) -> list[str]:
    """Every visible file below ``folder``, depth first in name order.

    Subfolders are identified by their real path and skipped when already in ``visited``,
    so a symlink back up the tree (or a second link to the same folder) is not walked
    again. Only regular files are returned; a socket or FIFO would block when opened.
    """
    files: list[str] = []
    for entry in _entries(folder, skipped):
        try:
            if entry.is_dir():
                real = os.path.realpath(entry.path)
                if real not in visited:
                    visited.add(real)
                    files += _files_under(Path(entry.path), visited, skipped)
            elif entry.is_file():
                files.append(entry.path)
            elif entry.is_symlink():
                skipped.append(SkippedFile(entry.path, "unreadable"))  # broken link
            else:
                skipped.append(SkippedFile(entry.path, "not an image"))
        except OSError:
            skipped.append(SkippedFile(entry.path, "unreadable"))
    return files


def _split_class_names(base: Path, train: list[str], val: list[str]) -> list[str]:
    if set(train) != set(val):
        only_train = ", ".join(sorted(set(train) - set(val))) or "none"
        only_val = ", ".join(sorted(set(val) - set(train))) or "none"
        raise DataError(
            f"{base / _TRAIN_DIR} and {base / _VAL_DIR} must hold the same class folders "
            f"(only in train: {only_train}; only in val: {only_val}). Add or rename folders "
            "so they match."
        )
    names = sorted(train)
    _require_two_classes(base / _TRAIN_DIR, names)
    return names


def _owning_classes(candidates: list[tuple[str, str, str]]) -> dict[str, str]:
    """For each real file, the one class it belongs to: the class where it is not a link,
    else the first class (in class order) that lists it."""
    owner: dict[str, str] = {}
    for _, name, path in candidates:
        if not os.path.islink(path):
            owner.setdefault(os.path.realpath(path), name)
    for _, name, path in candidates:
        owner.setdefault(os.path.realpath(path), name)
    return owner


def _require_distinct_class_folders(base: Path, folders: list[tuple[str, str, Path]]) -> None:
    """Two class names for one folder (a symlink to another class) would label every image
    twice; class names must also be storable (UTF-8) with the run."""
    seen: dict[str, str] = {}
    for prefix, name, path in folders:
        if not _is_utf8(name):
            raise DataError(
                f"The class folder name {printable_path(name)!r} in {printable_path(str(base))} is not valid "
                "UTF-8; rename the folder."
            )
        first = seen.setdefault(os.path.realpath(path), f"{prefix}{name}")
        if first != f"{prefix}{name}":
            raise DataError(
                f"Class folders '{first}' and '{prefix}{name}' in {base} are the same folder (one links to the "
                "other), so its images would be trained under two labels. Remove the link or make it a real "
                "folder with its own images."
            )


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode turned undecodable bytes into surrogates
        return False
    return True


def printable_path(path: str) -> str:
    """``path`` as text that can always be printed and stored as UTF-8 (undecodable bytes of
    a file name become ``\\xNN``-style escapes)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _refuse_flat_folder(base: Path, loose: list[SkippedFile]) -> None:
    """Images straight in the chosen folder are a common first try: say how to sort them, and
    hand their paths on (``loose`` are the files :func:`_subfolders` found outside a class)."""
    images = [file.path for file in loose if is_image_file(file.path)]
    if images:
        raise FlatImageFolderError(str(base), images)


def _require_two_classes(folder: Path, names: list[str]) -> None:
    if len(names) < 2:
        found = f" ({', '.join(names)})" if names else ""
        raise DataError(
            f"{folder} has {len(names)} class folder{'' if len(names) == 1 else 's'}{found}; "
            "at least 2 are needed. Put each class's images in its own subfolder, e.g. "
            f"{folder / 'cats'} and {folder / 'dogs'}."
        )


def _verify_all(
    paths: list[str], on_progress: ProgressCallback | None
) -> list[str | tuple[int, int]]:
    """:func:`_check` every path, in order, on a few threads.

    Decoding releases the GIL, so threads speed up folders of large photos; paths go out in
    chunks because a future per tiny file costs more than checking it.
    """
    total = len(paths)
    if on_progress is not None:
        on_progress(0, total)
    chunks = [paths[i : i + _CHUNK] for i in range(0, total, _CHUNK)]
    results: list[str | tuple[int, int]] = []
    last_report = time.monotonic()
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for chunk_results in pool.map(_check_chunk, chunks):
            results += chunk_results
            done, now = len(results), time.monotonic()
            if on_progress is None:
                continue
            if done == total or now - last_report >= _PROGRESS_INTERVAL_S:
                on_progress(done, total)
                last_report = now
    return results


def _check_chunk(paths: list[str]) -> list[str | tuple[int, int]]:
    return [_check(path) for path in paths]


def _check(path: str) -> str | tuple[int, int]:
    """``(width, height)`` of a usable image, else the reason to skip it."""
    if not is_image_file(path):
        return "not an image"
    if not _is_utf8(path):
        return "file name is not valid UTF-8 (rename it)"
    try:
        if os.path.getsize(path) == 0:
            return "zero bytes"
        return verify_image(path)
    except ImageTooLargeError:
        return "too large (decompression bomb)"
    except UnidentifiedImageError:
        return "not an image"
    except PermissionError:
        return "unreadable"
    except OSError as exc:
        return "truncated" if "truncated" in str(exc).lower() else "corrupt"
    except (SyntaxError, ValueError, EOFError, MemoryError):
        return "corrupt"


def _skipped_note(skipped: list[SkippedFile], folder: Path) -> str:
    inside = [s for s in skipped if Path(s.path).is_relative_to(folder)]
    if not inside:
        return " (it is empty)"
    reasons = Counter(s.reason for s in inside)
    return f" ({', '.join(f'{n} {reason}' for reason, n in sorted(reasons.items()))})"


def _summarise_sizes(sizes: list[tuple[int, int]]) -> SizeSummary | None:
    if not sizes:
        return None
    widths = [w for w, _ in sizes]
    heights = [h for _, h in sizes]
    return SizeSummary(
        min_width=min(widths),
        min_height=min(heights),
        median_width=int(statistics.median_low(widths)),
        median_height=int(statistics.median_low(heights)),
        max_width=max(widths),
        max_height=max(heights),
    )


def _relative(path: str, root: str | os.PathLike[str]) -> str:
    return Path(os.path.relpath(path, Path(root).absolute())).as_posix()
