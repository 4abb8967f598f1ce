"""The Map page's projection (PCA to 50, then openTSNE) against scikit-learn's PCA + TSNE
called directly, on the same features in the same run.

The features are the demo model's (ImageNet EfficientNet-Lite0, offline) pooled head inputs
for the 1,797 digits at ``--image-size`` pixels, computed once with the same pass the map
uses (``label_issues.pooled_features``) and not timed: both sides start from them. For
``--large`` points the digits' features are drawn again with replacement plus Gaussian noise
(0.25 of the features' own spread per axis), so the large case has the digits' cluster
structure at 20,000 points. Printed per size, for each method: the median wall time of the
projection over ``--repeats`` interleaved runs (the large case runs once) with its spread, and
the 11-nearest-neighbour class purity of the 2D map (0.1 by chance):

- ``headswap t-SNE``: ``embedding.tsne`` (openTSNE in slices of 10 iterations, with the
  stop checks and progress events the window gets) after ``principal_components(.., 50)``;
- ``sklearn t-SNE``: ``sklearn.decomposition.PCA(50)`` + ``sklearn.manifold.TSNE`` (Barnes-
  Hut, PCA initialisation, ``n_jobs`` = the same threads), one call;
- ``headswap PCA``: the first two principal components (the page's fast method).

    python bench/bench_embedding.py                  # digits and 20,000 points
    python bench/bench_embedding.py --large 0        # digits only
"""

from __future__ import annotations

import argparse
import os
import time

import _common
import numpy as np


def purity(coordinates: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """The share of each point's ``k`` nearest other points in 2D that share its label."""
    from sklearn.neighbors import NearestNeighbors

    _, nearest = NearestNeighbors(n_neighbors=k + 1).fit(coordinates).kneighbors(coordinates)
    return float((labels[nearest[:, 1:]] == labels[:, None]).mean())


def digit_features(image_size: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
    from headswap_gui.core.devices import resolve_device
    from headswap_gui.core.embedding import EmbeddingConfig
    from headswap_gui.core.label_issues import cpu_threads, feature_head, pooled_features
    from headswap_gui.core.sources import load_model

    dataset = _common.digits()
    loaded = load_model("demo")
    device = resolve_device("cpu")
    settings = EmbeddingConfig(image_size=image_size, cpu_threads=threads)
    with cpu_threads(device, threads):
        run = pooled_features(loaded, dataset.samples, feature_head(loaded.find_heads()), device, settings)
        while True:
            try:
                next(run)
            except StopIteration as end:
                cached = end.value
                break
    return cached.features.numpy(), np.array([s.label for s in dataset.samples])


def headswap_tsne(features: np.ndarray, threads: int) -> np.ndarray:
    import torch

    from headswap_gui.core.embedding import TSNE_INPUT_DIMS, tsne
    from headswap_gui.core.label_issues import principal_components

    components = principal_components(torch.from_numpy(features), TSNE_INPUT_DIMS).numpy()
    run = tsne(components, threads=threads)
    while True:
        try:
            next(run)
        except StopIteration as end:
            return end.value


def headswap_pca(features: np.ndarray) -> np.ndarray:
    import torch

    from headswap_gui.core.label_issues import principal_components

    return principal_components(torch.from_numpy(features), 2).numpy()


def sklearn_tsne(features: np.ndarray, threads: int) -> np.ndarray:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    components = PCA(50, random_state=0).fit_transform(features)
    return TSNE(2, init="pca", random_state=0, n_jobs=threads).fit_transform(components)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--large", type=int, default=20_000, help="points in the large case (0: skip it)")
    parser.add_argument("--threads", type=int, default=None, help="default: every core")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each method on the digits (medians shown)")
    args = parser.parse_args()
    from headswap_gui.core.devices import cpu_cores

    threads = args.threads or cpu_cores()
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; {threads} threads; "
          f"features at {args.image_size} px")
    features, labels = digit_features(args.image_size, threads)
    cases = [("digits", features, labels)]
    if args.large:
        rng = np.random.default_rng(0)
        drawn = rng.integers(0, len(features), args.large)
        noisy = features[drawn] + rng.normal(0, 0.25, (args.large, features.shape[1])) * features.std(axis=0)
        cases.append((f"{args.large:,} points", noisy.astype(np.float32), labels[drawn]))
    methods = [("headswap t-SNE", lambda x: headswap_tsne(x, threads)),
               ("sklearn t-SNE", lambda x: sklearn_tsne(x, threads)),
               ("headswap PCA", headswap_pca)]
    print(f"{'case':<16}{'method':<16}{'median s':>9}{'spread':>14}{'purity':>9}")
    for index, (name, x, y) in enumerate(cases):
        repeats = args.repeats if index == 0 else 1  # the large case once: scikit-learn takes minutes
        times: dict[str, list[float]] = {method: [] for method, _ in methods}
        purities: dict[str, float] = {}
        for _ in range(repeats):  # interleaved, so a busy spell on the shared machine hits every method
            for method, project in methods:
                started = time.perf_counter()
                coordinates = project(x)
                times[method].append(time.perf_counter() - started)
                purities[method] = purity(coordinates, y)
        for method, _ in methods:
            print(f"{name:<16}{method:<16}{_common.median(times[method]):>9.1f}{_common.spread(times[method]):>14}"
                  f"{purities[method]:>9.3f}", flush=True)
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end")


if __name__ == "__main__":
    main()
