"""Label-issue recall on the digits with deliberately swapped labels, and the time it takes.

A copy of the 1,797 digits is written to a temporary folder and ``--swap`` of its files (5 %:
90) are moved into a random other class folder (seeded). Then ``label_issues.find_label_issues``
runs over every image with the demo model (ImageNet EfficientNet-Lite0, offline) at
``--image-size`` pixels: features, 5-fold out-of-fold logistic regression, confident-learning
scores. Printed per swap seed:

- recall in the top N: the share of the N swapped files among the N lowest scores;
- the flagged set (confident learning's estimate): its size, recall and precision;
- the wall time of the whole check (model already loaded; folder scan excluded), split into
  features and cross-validation.

``--via-run`` first trains a head-only run (3 epochs, cached features) and checks that run
instead, as ``headswap label-issues RUN DIR`` does: then only the run's training images (80 %)
are checked, and N counts the swapped files among them. ``--cleanlab`` (needs cleanlab
importable; it is not a dependency) compares the scores and flags with cleanlab's on the same
out-of-fold probabilities.

    python bench/bench_label_issues.py                 # 64 px, swap seed 0
    python bench/bench_label_issues.py --seeds 3 --cleanlab
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import _common
import numpy as np


def swap_labels(root: Path, fraction: float, seed: int) -> dict[str, str]:
    """Move ``fraction`` of the images into a random other class folder: {new path: true class}."""
    rng = random.Random(seed)
    files = sorted(root.glob("*/*.png"))
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    moved = {}
    for path in rng.sample(files, round(fraction * len(files))):
        target = root / rng.choice([c for c in classes if c != path.parent.name]) / path.name
        path.rename(target)
        moved[str(target)] = path.parent.name
    return moved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--swap", type=float, default=0.05, help="fraction of files moved to a wrong class")
    parser.add_argument("--seeds", type=int, default=1, help="swap seeds 0..N-1, one check each")
    parser.add_argument("--via-run", action="store_true", help="train a head-only run first and check it")
    parser.add_argument("--cleanlab", action="store_true", help="compare with cleanlab on the same probabilities")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores, as the CLI)")
    args = parser.parse_args()
    _common.header("label issues on the digits", device=args.device)

    from headswap_gui.core import label_issues
    from headswap_gui.core.data import scan_image_folder
    from headswap_gui.core.devices import cpu_cores
    from headswap_gui.core.events import Progress
    from headswap_gui.core.label_issues import FOLDS_STAGE, LabelCheckConfig, LabelCheckFinished
    from headswap_gui.core.sources import load_model

    threads = args.threads or cpu_cores()
    print(f"CPU threads: {threads}")
    source = _common.digits()
    captured: dict[str, np.ndarray] = {}
    rank = label_issues.rank_label_issues

    def keep_probabilities(samples, probabilities, *rest, **options):  # noqa: ANN001, ANN202 - observes only
        captured["probabilities"], captured["labels"] = probabilities, np.array([s.label for s in samples])
        captured["paths"] = np.array([s.path for s in samples])
        return rank(samples, probabilities, *rest, **options)

    label_issues.rank_label_issues = keep_probabilities
    rows = []
    for seed in range(args.seeds):
        work = Path(tempfile.mkdtemp(prefix="headswap-label-issues-"))
        try:
            root = work / "digits"
            shutil.copytree(source.root, root)
            moved = swap_labels(root, args.swap, seed)
            dataset = scan_image_folder(root)
            loaded = load_model("demo")
            config = LabelCheckConfig(device=args.device, image_size=args.image_size, cpu_threads=threads)
            if args.via_run:
                loaded = _train_run(loaded, dataset, work / "run", args, threads)
                config = LabelCheckConfig(device=args.device, cpu_threads=threads)
            started = time.perf_counter()
            features_done = None
            for event in label_issues.find_label_issues(loaded, dataset, config):
                if isinstance(event, Progress) and event.stage == FOLDS_STAGE and event.done == 0:
                    features_done = time.perf_counter()
                if isinstance(event, LabelCheckFinished):
                    finished = event
            seconds = time.perf_counter() - started
            if finished.info is None:
                print(f"seed {seed}: {finished.reason}: {finished.message}")
                return 1
            info = finished.info
            checked = {issue.path for issue in info.issues if issue.kind == "label"}
            swapped = {path for path in moved if path in checked}
            ranked = [issue for issue in info.issues if issue.kind == "label"]
            top = ranked[: len(swapped)]
            recall = sum(issue.path in swapped for issue in top) / len(swapped)
            right = sum(issue.suggested_label == moved[issue.path] for issue in top if issue.path in swapped)
            flagged = [issue for issue in info.flagged if issue.kind == "label"]
            hits = sum(issue.path in swapped for issue in flagged)
            print(f"seed {seed}: {finished.message}")
            print(f"  recall in the top {len(swapped)}: {recall:.3f} (suggested label = true class for {right} of "
                  f"{sum(issue.path in swapped for issue in top)}); flagged {len(flagged)}: recall "
                  f"{hits / len(swapped):.3f}, precision {hits / max(1, len(flagged)):.3f}; l2 {info.l2}")
            feature_seconds = features_done - started
            print(f"  time {seconds:.1f} s (features {feature_seconds:.1f} s, cross-validation and scoring "
                  f"{seconds - feature_seconds:.1f} s)", flush=True)
            if args.cleanlab:
                _compare_with_cleanlab(captured, info)
            rows.append((seed, info.images, len(swapped), recall, len(flagged), hits / len(swapped),
                         hits / max(1, len(flagged)), info.out_of_fold_accuracy, feature_seconds, seconds))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(_common.table(
        ["swap seed", "images", "swapped", "recall@N", "flagged", "flag recall", "flag precision", "oof agreement",
         "features s", "total s"], rows))
    recalls = [row[3] for row in rows]
    print(f"RECALL@N median {_common.median(recalls):.3f} ({_common.spread(recalls)}) at {args.image_size} px; "
          f"time median {_common.median([row[-1] for row in rows]):.1f} s")
    return 0


def _train_run(loaded, dataset, folder, args, threads):  # noqa: ANN001, ANN202
    from headswap_gui.core.sources import load_model, swap_head
    from headswap_gui.core.training import TrainConfig, fit

    swap_head(loaded, len(dataset.class_names), class_names=dataset.class_names, seed=0)
    config = TrainConfig(epochs=3, image_size=args.image_size, device=args.device, lr=1e-2, cpu_threads=threads)
    for event in fit(loaded, dataset, config, folder):
        last = event
    print(f"  trained {folder}: {last.message}")
    return load_model(str(folder))


def _compare_with_cleanlab(captured, info) -> None:  # noqa: ANN001
    try:
        import cleanlab.filter
        import cleanlab.rank
    except ImportError:
        print("  cleanlab is not importable; no comparison")
        return
    probabilities, labels, paths = captured["probabilities"], captured["labels"], captured["paths"]
    scores = cleanlab.rank.get_label_quality_scores(labels, probabilities, method="self_confidence")
    ours = {issue.path: issue.score for issue in info.issues if issue.kind == "label"}
    same_scores = np.allclose(scores, [ours[p] for p in paths], atol=1e-6)
    theirs = set(paths[cleanlab.filter.find_label_issues(labels, probabilities, filter_by="confident_learning")])
    default = set(paths[cleanlab.filter.find_label_issues(labels, probabilities)])
    flagged = {issue.path for issue in info.flagged if issue.kind == "label"}
    print(f"  cleanlab {cleanlab.__version__}: self-confidence scores equal: {same_scores}; "
          f"filter_by='confident_learning' flags {len(theirs)}, same set as ours: {theirs == flagged}; "
          f"its default filter (prune_by_noise_rate) flags {len(default)}")


if __name__ == "__main__":
    sys.exit(main())
