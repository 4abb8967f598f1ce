"""Head detection over every timm architecture, as a user's own model file would present it.

Each architecture is built structure-only (weights on ``meta``), wrapped in a plain
``nn.Module`` container — so timm's own attributes are one level down and nobody states the
input size — and handed to ``heads.detect_heads`` with no input size. The oracle is timm's
``pretrained_cfg``:

* a **headed** model (``num_classes > 0``) is right when the main and distillation heads
  found are exactly the cfg's ``classifier`` paths;
* a **feature extractor** (``num_classes == 0``) is right when an empty slot is reported
  (role ``new``) and replacing it gives a model whose output has one column per class;
* any head found outside the oracle's paths is a **head inside the trunk**.

One line per model, then the totals; ``--json`` writes every row.

    python bench/sweep_timm.py [--jobs 2] [--json sweep.json] [--filter 'vit_*'] [--limit N]
                               [--failed-in earlier.json]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import multiprocessing as mp
import signal
import time
from typing import Any

PER_MODEL_TIMEOUT_S = 300


class _TimeoutError(Exception):
    pass


def _alarm(_signum: int, _frame: Any) -> None:
    raise _TimeoutError()


def check(name: str) -> dict[str, Any]:
    """Build, wrap and detect one architecture; the verdict as a row."""
    import timm
    from torch import nn

    from headswap_gui.core.construction import build_empty
    from headswap_gui.core.heads import detect_heads, replace_head
    from headswap_gui.core.tracing import trace_forward

    class UserContainer(nn.Module):  # what a user's own file holds: their model, one level down
        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: Any) -> Any:
            return self.model(x)

    started = time.perf_counter()
    row: dict[str, Any] = {"name": name, "ok": False, "kind": "?", "found": [], "expected": [], "trunk_heads": [], "reason": ""}
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(PER_MODEL_TIMEOUT_S)
    try:
        inner = build_empty(lambda: timm.create_model(name, pretrained=False))
        wrapped = UserContainer(inner)
        cfg = getattr(inner, "pretrained_cfg", {}) or {}
        classifier = cfg.get("classifier") or ()
        classifier = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        headed = int(getattr(inner, "num_classes", 0) or 0) > 0
        row["kind"] = "headed" if headed else "features"
        detection = detect_heads(wrapped)
        heads = detection.heads
        size = detection.eval_trace.input_size if detection.eval_trace is not None else 224
        row["input_size"] = size
        row["found"] = [f"{h.path} ({h.role})" for h in heads]
        found = {h.path for h in heads if h.role in ("main", "distillation", "new")}
        if headed:
            expected = {f"model.{p}" for p in classifier if _exists(wrapped, f"model.{p}")}
            # timm's get_classifier() is the second authority: LeViT's cfg omits head_dist.
            expected |= {h.path for h in heads if h.role == "distillation" and _inside(h.path, _classifier_paths(wrapped))}
            row["expected"] = sorted(expected)
            row["trunk_heads"] = sorted({h.path for h in heads} - expected)
            row["ok"] = found == expected and not row["trunk_heads"]
            if not row["ok"]:
                row["reason"] = f"found {sorted(found)}, cfg says {sorted(expected)}"
        else:
            slots = [h for h in heads if h.role == "new"]
            row["trunk_heads"] = sorted(h.path for h in heads if h.role != "new")
            if not slots:
                row["reason"] = "no empty head slot reported"
            else:
                replace_head(wrapped, 5, heads=list(heads))
                output = trace_forward(wrapped, size, meta_only=True).main_outputs[0]
                row["ok"] = tuple(output.shape) == (2, 5) and not row["trunk_heads"]
                if not row["ok"]:
                    row["reason"] = f"after attaching a 5-class head the output is {tuple(output.shape)}"
    except _TimeoutError:
        row["reason"] = f"timed out after {PER_MODEL_TIMEOUT_S} s"
    except Exception as error:  # noqa: BLE001 - every failure is a row of the report
        row["reason"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
    finally:
        signal.alarm(0)
    row["seconds"] = round(time.perf_counter() - started, 2)
    return row


def _classifier_paths(wrapped: Any) -> list[str]:
    """Paths of the modules the inner model's ``get_classifier()`` returns."""
    try:
        modules = wrapped.model.get_classifier()
    except Exception:  # noqa: BLE001 - not every model has the API
        return []
    modules = modules if isinstance(modules, (tuple, list)) else (modules,)
    by_id = {id(m): p for p, m in wrapped.named_modules()}
    return [by_id[id(m)] for m in modules if id(m) in by_id]


def _inside(path: str, parents: list[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in parents)


def _exists(model: Any, path: str) -> bool:
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", help="write every row to this file")
    parser.add_argument("--filter", default="*", help="fnmatch pattern over timm names")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--failed-in", help="only the models that failed in this earlier --json report")
    args = parser.parse_args()
    import timm

    names = [n for n in timm.list_models() if fnmatch.fnmatch(n, args.filter)]
    if args.failed_in:
        with open(args.failed_in, encoding="utf-8") as handle:
            failed = {r["name"] for r in json.load(handle)["rows"] if not r["ok"]}
        names = [n for n in names if n in failed]
    if args.limit:
        names = names[: args.limit]
    started = time.perf_counter()
    rows = []
    with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=25) as pool:
        for row in pool.imap_unordered(check, names):
            rows.append(row)
            mark = "ok  " if row["ok"] else "FAIL"
            detail = ", ".join(row["found"]) if row["ok"] else row["reason"]
            print(f"{mark} {row['kind']:8s} {row['name']:55s} {row.get('input_size', '-')!s:>4} px "
                  f"{row['seconds']:6.2f} s  {detail}", flush=True)
    elapsed = time.perf_counter() - started
    ok = sum(r["ok"] for r in rows)
    trunk = sum(bool(r["trunk_heads"]) for r in rows)
    by_kind = {}
    for kind in ("headed", "features", "?"):
        subset = [r for r in rows if r["kind"] == kind]
        if subset:
            by_kind[kind] = (sum(r["ok"] for r in subset), len(subset))
    print(f"\ntotal: {ok}/{len(rows)} right ({ok / max(1, len(rows)):.2%}); models with a head inside the trunk: {trunk}; "
          + "; ".join(f"{k} {a}/{b}" for k, (a, b) in by_kind.items()) + f"; {elapsed:.0f} s with {args.jobs} jobs")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"rows": sorted(rows, key=lambda r: r["name"]), "seconds": elapsed}, handle, indent=1)
    return 0 if ok == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
