"""How soon the window shows the layer tree of the largest torchvision models, head selected.

Target: within 1 s of having the loaded model, the Layers tree is populated and the head row is
selected and scrolled into view in a painted frame.

What the window does after a model is loaded (``main_window.load_model_events`` on the worker
thread, then ``MainWindow._install_loaded`` on the GUI thread), reproduced step by step and
timed separately:

* load      ``sources.load_model(source, structure_only=True)`` — reported on its own, not
            part of the target (weights never allocated: the structure-only inspection case);
* inspect   ``module_tree.inspect_model(model, size)``, the call ``load_model_events`` makes:
            ``heads.detect_heads`` (traced dummy forwards on ``meta``) and
            ``build_module_tree`` from that trace's shapes;
* install   ``MainWindow._install_loaded(ModelLoadResult(...))``: controller.set_model →
            ModelPanel: ``LayerTreeModel.set_root``, expand the root, ``focus_head`` (expand
            the ancestors, select, scroll to centre), status bar, Try it page;
* shown     events processed until a paint of the tree's viewport in which the head row is the
            current, selected row and lies inside the viewport.

"to tree" = inspect + install + shown, the time the target is about.

A second measurement (``--mode window`` or ``both``) goes through the real thing:
``MainWindow.load_model(source)`` with its GeneratorRunner and queued signals, where the only
change is that ``sources.load_model`` is wrapped to pass ``structure_only=True`` and to note
the moment the model is loaded; it is timed from that moment to the same painted frame.

The window is the real one (all pages built, offscreen, 1400×900, private settings).
Each model is measured ``--runs`` times after one discarded warm-up run of a small model.

    QT_QPA_PLATFORM=offscreen python bench/bench_gui_tree.py            # 5 runs per model
    QT_QPA_PLATFORM=offscreen python bench/bench_gui_tree.py --quick    # 2 runs per model
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import _common

SOURCES = ("torchvision:vit_h_14", "torchvision:regnet_y_128gf")
TARGET_S = 1.0
TIMEOUT_S = 60.0


class PaintWatch:
    """Counts paint events of a widget (the tree's viewport) and notes when the last began."""

    def __init__(self, widget: Any) -> None:
        from PySide6.QtCore import QEvent, QObject

        watch = self

        class _Filter(QObject):
            def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802 - Qt override
                if event.type() == QEvent.Type.Paint:
                    watch.count += 1
                    watch.last = time.perf_counter()
                return False

        self.count = 0
        self.last = 0.0
        self._filter = _Filter()
        widget.installEventFilter(self._filter)


def head_shown(window: Any, path: str) -> bool:
    panel = window.model_panel
    view = panel.tree_view
    index = panel.proxy_index_for_path(path)
    if not index.isValid():
        return False
    if view.currentIndex() != index or not view.selectionModel().isSelected(index):
        return False
    rect = view.visualRect(index)
    return rect.isValid() and view.viewport().rect().contains(rect.center()) and rect.height() > 0


def wait_shown(app: Any, window: Any, watch: PaintWatch, path: str, since_paints: int) -> float:
    """Process events until a paint of the viewport happened with the head row shown; returns
    the time that paint began (perf_counter)."""
    deadline = time.perf_counter() + TIMEOUT_S
    while time.perf_counter() < deadline:
        app.processEvents()
        if watch.count > since_paints and head_shown(window, path):
            # The paint seen may predate the final scroll; one more round makes sure the frame
            # that shows the row has been painted.
            before = watch.count
            window.model_panel.tree_view.viewport().update()
            app.processEvents()
            return watch.last if watch.count > before else time.perf_counter()
        time.sleep(0.0005)
    raise SystemExit(f"timed out: the head row {path!r} never showed")


def direct_once(app: Any, window: Any, watch: PaintWatch, source: str) -> dict[str, float]:
    from headswap_gui.core.module_tree import inspect_model
    from headswap_gui.core.sources import load_model
    from headswap_gui.gui.job_events import ModelLoadResult

    t0 = time.perf_counter()
    loaded = load_model(source, structure_only=True)
    t1 = time.perf_counter()
    inspection = inspect_model(loaded.model, loaded.preprocessing.input_size)
    t3 = time.perf_counter()
    paints = watch.count
    window.loads.install(ModelLoadResult(
        loaded, inspection.heads, dict(inspection.output_shapes), inspection.tree, inspection.problem
    ))
    t4 = time.perf_counter()
    head = window.controller.main_head()
    assert head is not None, f"{source}: no head found ({inspection.problem})"
    shown = wait_shown(app, window, watch, head.path, paints)
    return {
        "load": t1 - t0, "inspect": t3 - t1, "install": t4 - t3, "shown": shown - t4,
        "to_tree": shown - t1, "modules": sum(1 for _ in inspection.tree.walk()), "head": head.path,
    }


def window_once(app: Any, window: Any, watch: PaintWatch, source: str) -> dict[str, float]:
    """Through ``MainWindow.load_model``: worker thread, queued signals, the real slots."""
    from headswap_gui.core import sources

    real = sources.load_model
    marks: dict[str, float] = {}

    def structure_only(src: str, **kwargs: Any) -> Any:
        marks["start"] = time.perf_counter()
        kwargs["structure_only"] = True
        loaded = real(src, **kwargs)
        marks["loaded"] = time.perf_counter()
        return loaded

    from PySide6.QtCore import QEventLoop, QTimer

    received: list[Any] = []
    loop = QEventLoop()

    def loaded_signal(value: Any) -> None:
        received.append(value)
        loop.quit()

    window.modelLoaded.connect(loaded_signal)
    sources.load_model = structure_only
    try:
        paints = watch.count
        assert window.load_model(source)
        # An idle event loop while the worker runs (a polling loop here would fight the worker
        # for the GIL and slow it down); modelLoaded ends it.
        QTimer.singleShot(int(TIMEOUT_S * 1000), loop.quit)
        loop.exec()
        if not received:
            raise SystemExit(f"timed out loading {source} through the window")
        head = window.controller.main_head()
        shown = wait_shown(app, window, watch, head.path, paints)
        while window.is_loading():
            app.processEvents()
    finally:
        sources.load_model = real
        window.modelLoaded.disconnect(loaded_signal)
    return {"load": marks["loaded"] - marks["start"], "to_tree": shown - marks["loaded"], "head": head.path}


def diagnose(source: str) -> str:
    """Why ``heads`` costs what it does: one eval-mode meta trace timed alone, and whether
    ``detect_heads`` runs a second, train-mode trace (it does when a layer with weights stays
    idle in eval mode, to look for auxiliary heads)."""
    from headswap_gui.core import heads as heads_module
    from headswap_gui.core.sources import load_model
    from headswap_gui.core.tracing import trace_forward

    loaded = load_model(source, structure_only=True)
    size = loaded.preprocessing.input_size
    t0 = time.perf_counter()
    trace = trace_forward(loaded.model, size, train=False)
    one = time.perf_counter() - t0
    executed = set(trace.executed)
    idle = [
        path for path, module in loaded.model.named_modules()
        if path not in executed and any(True for _ in module.parameters(recurse=False))
    ]
    second = heads_module._has_idle_layers(loaded.model, trace)
    kinds = sorted({type(loaded.model.get_submodule(p)).__name__ for p in idle})
    text = (f"{source}: one eval-mode meta trace {one:.3f} s at {size} px; second (train-mode) trace in "
            f"detect_heads: {'yes' if second else 'no'} — {len(idle)} idle layers with weights"
            + (f" ({', '.join(kinds)}; e.g. {idle[0]})" if idle else ""))
    if second:
        # The proposed fix, tried here only (restored afterwards): the children of an
        # nn.MultiheadAttention (out_proj) are used through F.multi_head_attention_forward,
        # never called, so they are not "idle" and need no train-mode trace.
        from torch import nn

        original = heads_module._has_idle_layers

        def mha_aware(model: Any, result: Any) -> bool:
            done = set(result.executed)
            inside_mha = {
                f"{p}.{n}" if p else n
                for p, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)
                for n, _ in m.named_children()
            }
            return any(
                path not in done and path not in inside_mha and any(True for _ in module.parameters(recurse=False))
                for path, module in model.named_modules()
            )

        timings: dict[str, list[float]] = {"as is": [], "fix": []}
        found: dict[str, list[str]] = {}
        try:
            for _ in range(3):
                for name, rule in (("as is", original), ("fix", mha_aware)):
                    heads_module._has_idle_layers = rule
                    t0 = time.perf_counter()
                    detection = heads_module.detect_heads(loaded.model, size)
                    timings[name].append(time.perf_counter() - t0)
                    found[name] = [h.path for h in detection.heads]
        finally:
            heads_module._has_idle_layers = original
        text += (f"\n    detect_heads as is {_common.median(timings['as is']):.3f} s → {found['as is']}; with "
                 f"MultiheadAttention children not counted as idle {_common.median(timings['fix']):.3f} s → "
                 f"{found['fix']} (median of 3, alternating)")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 runs per model")
    parser.add_argument("--runs", type=int, default=None, help="runs per model (default 5; --quick 2)")
    parser.add_argument("--sources", nargs="+", default=list(SOURCES))
    parser.add_argument("--mode", choices=["direct", "window", "both"], default="both")
    args = parser.parse_args(argv)
    runs = args.runs or (2 if args.quick else 5)

    _common.header("bench_gui_tree: loaded model → layer tree shown with the head row selected")
    work = Path(tempfile.mkdtemp(prefix="headswap-bench-tree-"))
    from headswap_gui.gui.qt_env import prepare_qt_environment

    prepare_qt_environment()
    from PySide6.QtCore import QCoreApplication, QSettings
    from PySide6.QtWidgets import QApplication

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(work / "settings"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QCoreApplication.setOrganizationName("headswap-bench")
    QCoreApplication.setApplicationName("headswap-bench-tree")
    app = QApplication.instance() or QApplication([sys.argv[0]])
    from headswap_gui.app import apply_color_scheme

    apply_color_scheme(app)
    _common.warm_imports()
    from headswap_gui.gui.main_window import MainWindow
    from headswap_gui.gui.settings import AppSettings
    from headswap_gui.gui.worker import stop_all_runners

    window = MainWindow(settings=AppSettings(), runs_root=work / "runs")  # every page built
    window.resize(1400, 900)
    window.show()
    for _ in range(20):
        app.processEvents()
    watch = PaintWatch(window.model_panel.tree_view.viewport())
    warm = direct_once(app, window, watch, "torchvision:resnet18")
    print(f"warm-up (resnet18): to tree {warm['to_tree']:.3f} s\n", flush=True)

    rows = []
    window_rows = []
    for source in args.sources:
        if args.mode in ("direct", "both"):
            results = []
            for run in range(runs):
                result = direct_once(app, window, watch, source)
                results.append(result)
                print(f"  {source} run {run + 1}: load {result['load']:.3f} s; inspect {result['inspect']:.3f} + "
                      f"install {result['install']:.3f} + shown {result['shown']:.3f} "
                      f"= {result['to_tree']:.3f} s; head {result['head']}", flush=True)
            med = {k: _common.median([r[k] for r in results]) for k in ("load", "inspect", "install", "shown", "to_tree")}
            totals = [r["to_tree"] for r in results]
            rows.append((source, results[0]["modules"], med["load"], med["inspect"], med["install"],
                         med["shown"], med["to_tree"], _common.spread(totals),
                         "yes" if med["to_tree"] <= TARGET_S else "NO"))
        if args.mode in ("window", "both"):
            results = []
            for run in range(runs):
                result = window_once(app, window, watch, source)
                results.append(result)
                print(f"  {source} via MainWindow.load_model run {run + 1}: load {result['load']:.3f} s; "
                      f"loaded → head row shown {result['to_tree']:.3f} s", flush=True)
            totals = [r["to_tree"] for r in results]
            window_rows.append((source, _common.median([r["load"] for r in results]), _common.median(totals),
                                _common.spread(totals), "yes" if _common.median(totals) <= TARGET_S else "NO"))
    print()
    if rows:
        print("direct (phases as main_window does them; seconds, medians):")
        print(_common.table(
            ["source", "modules", "load", "inspect", "install", "shown", "to tree", "to tree min–max", f"≤ {TARGET_S:g} s"],
            rows))
        print()
    if window_rows:
        print("through MainWindow.load_model (worker thread + queued signals; seconds, medians):")
        print(_common.table(["source", "load", "loaded → shown", "min–max", f"≤ {TARGET_S:g} s"], window_rows))
    rss, peak = _common.rss_bytes()
    print(f"\nprocess RSS at the end {_common.mib(rss):,.0f} MiB, peak {_common.mib(peak):,.0f} MiB")
    if rows:
        print("\ndiagnosis:")
        for source in args.sources:
            print("  " + diagnose(source), flush=True)
    for row in rows:
        print(f"TREE {row[0]}: {row[6]:.3f} s median to tree (load {row[2]:.3f} s)")
    window.shutdown(10_000)
    stop_all_runners(10_000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
