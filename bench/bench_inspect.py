"""How long ``headswap inspect`` takes for the largest torchvision models and for ``demo``.

Times exactly what the CLI's ``inspect`` does: ``load_model(source, structure_only=True)``
(weights never allocated: parameters on ``meta``), ``detect_heads`` (a traced dummy forward on
``meta``) and ``build_module_tree`` (reusing that trace's output shapes). After a warm-up
that imports torch, torchvision, timm and the engine and inspects a small model once, every
source is inspected ``--runs`` times; the median (and min–max) of each part is printed. The
peak RSS of the process at the end shows that nothing the size of the weights was allocated.

    python bench/bench_inspect.py            # 5 runs per model
    python bench/bench_inspect.py --quick    # 2 runs per model
"""

from __future__ import annotations

import argparse
import sys
import time

import _common

SOURCES = ("torchvision:vit_h_14", "torchvision:regnet_y_128gf", "torchvision:vit_l_16", "demo")


def inspect_once(source: str) -> tuple[float, float, float, int, int]:
    from headswap_gui.core.heads import detect_heads
    from headswap_gui.core.module_tree import build_module_tree
    from headswap_gui.core.sources import load_model

    t0 = time.perf_counter()
    loaded = load_model(source, structure_only=True)
    t1 = time.perf_counter()
    detection = detect_heads(loaded.model, loaded.preprocessing.input_size)
    t2 = time.perf_counter()
    tree = build_module_tree(loaded.model, loaded.preprocessing.input_size, list(detection.heads),
                             detection.eval_trace.output_shapes)
    t3 = time.perf_counter()
    layers = sum(1 for _ in tree.walk())
    return t1 - t0, t2 - t1, t3 - t2, loaded.parameter_count, layers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 runs per model")
    parser.add_argument("--runs", type=int, default=None, help="runs per model (default 5; --quick 2)")
    parser.add_argument("--sources", nargs="+", default=list(SOURCES))
    args = parser.parse_args(argv)
    runs = args.runs or (2 if args.quick else 5)

    _common.header("bench_inspect: load_model(structure_only) + detect_heads + build_module_tree")
    started = time.perf_counter()
    _common.warm_imports()
    inspect_once("torchvision:resnet18")
    print(f"warm-up (imports + one resnet18 inspect): {time.perf_counter() - started:.2f} s\n", flush=True)

    rows = []
    for source in args.sources:
        timings = [inspect_once(source) for _ in range(runs)]
        load, heads, tree = ([t[i] for t in timings] for i in range(3))
        totals = [sum(t[:3]) for t in timings]
        params, layers = timings[0][3], timings[0][4]
        rows.append((source, f"{params / 1e6:,.1f} M", layers, _common.median(load), _common.median(heads),
                     _common.median(tree), _common.median(totals), _common.spread(totals)))
        print(f"  {source}: median {_common.median(totals):.3f} s over {runs} runs ({_common.spread(totals)} s)", flush=True)
    print()
    print(_common.table(["source", "parameters", "modules", "load s", "detect_heads s", "module tree s", "total s (median)", "total min–max s"], rows))
    rss, peak = _common.rss_bytes()
    print(f"\nprocess RSS at the end {_common.mib(rss):,.0f} MiB, peak {_common.mib(peak):,.0f} MiB "
          "(vit_h_14's fp32 weights alone would be ~2,400 MiB)")
    for row in rows:
        print(f"INSPECT {row[0]}: {row[6]:.3f} s median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
