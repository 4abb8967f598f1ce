"""The ``headswap`` command: inspect, swap, train, predict and export over the same core
the window uses.

Every problem with the user's input ends in one line on stderr and a non-zero exit status,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

EXIT_USER_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    _printable_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    from .core.errors import HeadswapError

    try:
        with _terminate_as_interrupt():
            return int(args.handler(args) or 0)
    except HeadswapError as error:
        hint = _flag_hint(error)
        print(f"headswap: error: {error}{f' ({hint})' if hint else ''}", file=sys.stderr)
        return EXIT_USER_ERROR
    except _Interrupted as interrupt:
        print(f"headswap: {interrupt.name} received; stopped (nothing is left half-written)", file=sys.stderr)
        return 128 + interrupt.signum
    except KeyboardInterrupt:
        print("headswap: interrupted (nothing is left half-written)", file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception as error:  # last resort: one line, the traceback on request
        if os.environ.get("HEADSWAP_DEBUG"):
            raise
        print(
            f"headswap: unexpected error ({type(error).__name__}: {error}); "
            "rerun with HEADSWAP_DEBUG=1 to see the traceback and please report it",
            file=sys.stderr,
        )
        return 1


def _flag_hint(error: Exception) -> str:
    """The command-line way to act on a typed core error (core messages name no flags)."""
    from .core.errors import (
        HeadNotFoundError,
        NeedsArchitectureError,
        NeedsTrustError,
        RunExistsError,
        WeightsNotCachedError,
    )

    if isinstance(error, WeightsNotCachedError):
        return "add --download to fetch them"
    if isinstance(error, HeadNotFoundError):
        return "name it with --head-path PATH; `headswap inspect` shows the layers"
    if isinstance(error, NeedsTrustError):
        return "add --trust to load it anyway"
    if isinstance(error, NeedsArchitectureError):
        return "name it with --arch, e.g. --arch torchvision:resnet50"
    if isinstance(error, RunExistsError):
        return "--resume continues it, --force replaces it" if error.kind == "training-run" else "--force replaces it"
    return ""


class _Interrupted(KeyboardInterrupt):
    """SIGTERM (or a second SIGINT during training) raised where the program stood, so that
    every ``finally`` runs: temp files are removed and the run folder's lock is released."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise _Interrupted(signum)


@contextmanager
def _handle_signals(handler: Any, signals: Sequence[int]) -> Iterator[None]:
    """Install ``handler`` for ``signals`` while the block runs (main thread only: Python
    delivers signals there, and ``main()`` may be called from a test's worker thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _terminate_as_interrupt() -> Any:
    return _handle_signals(_raise_interrupted, [signal.SIGTERM])


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[list[int]]:
    """During training, SIGINT or SIGTERM asks the run to stop after the current step (it
    then ends as "stopped" with its last epoch committed); a second signal interrupts at once."""
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            _raise_interrupted(signum, frame)
        received.append(signum)
        stop.set()
        print(f"\nheadswap: {signal.Signals(signum).name} received; stopping after the current step "
              "(send it again to stop at once)", file=sys.stderr, flush=True)

    with _handle_signals(handler, [signal.SIGINT, signal.SIGTERM]):
        yield received


def _printable_streams() -> None:
    """File names that are not valid UTF-8 print as escapes instead of crashing the print."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headswap",
        description="Fine-tune pretrained image classifiers by replacing their classifier head.",
        epilog="Model sources: demo, torchvision:NAME[@WEIGHTS], timm:NAME[@pretrained], hf:DIR, "
        "a headswap model folder, or a weights file with --arch.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    inspect = commands.add_parser("inspect", help="show the layer tree with the classifier heads marked")
    _add_source_arguments(inspect)
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.add_argument("--depth", type=int, default=None, help="limit the printed tree depth")
    inspect.set_defaults(handler=_inspect)

    swap = commands.add_parser("swap", help="replace the classifier head and save the model")
    _add_source_arguments(swap)
    swap.add_argument("--classes", type=int, required=True, help="number of output classes")
    swap.add_argument("--class-names", help="comma-separated class names, in output order")
    _add_head_arguments(swap)
    swap.add_argument("-o", "--output", required=True, help="model folder to write")
    swap.add_argument("--force", action="store_true", help="replace a run or model already in --output")
    swap.set_defaults(handler=_swap)

    models = commands.add_parser("models", help="list the model names a source offers")
    models.add_argument("library", choices=["torchvision", "timm"], help="which zoo")
    models.add_argument("pattern", nargs="?", default="", help="only names containing this")
    models.set_defaults(handler=_models)

    train = commands.add_parser("train", help="fine-tune on an image folder (one subfolder per class)",
                                epilog="Under torchrun (torchrun --nproc_per_node N \"$(command -v headswap)\" train "
                                       "...) the processes share every batch: --batch-size is the whole job's.")
    _add_source_arguments(train, optional=True)
    train.add_argument("data", nargs="?", help="image folder: one subfolder per class, or train/ and val/ inside")
    train.add_argument("--config", metavar="FILE",
                       help="a run's settings: a JSON/TOML config (from the window's Run on a cluster…) or a run's "
                            "headswap.json; it names SOURCE, DATA and the head too, and flags given here override it")
    train.add_argument("-o", "--output", help="run folder to write (default: a new dated folder in the runs "
                                               "folder, see `headswap runs`); a model source afterwards")
    _add_head_arguments(train)
    for flags, options in _TRAIN_OPTIONS:
        train.add_argument(*flags, **options)
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --output from its last epoch, with its recorded settings "
                            "(only --epochs, --patience, --device, --precision, --workers, --threads may change)")
    train.add_argument("--force", action="store_true", help="replace a run or model already in --output")
    train.add_argument("--show-skipped", action="store_true", help="list every skipped file with its reason")
    train.set_defaults(handler=_train)

    runs = commands.add_parser("runs", help="list the training runs in the runs folder")
    runs.add_argument("--root", help="runs folder (default: $HEADSWAP_RUNS_DIR or the user data folder)")
    runs.add_argument("--json", action="store_true", help="print one JSON list")
    runs.set_defaults(handler=_runs)

    predict = commands.add_parser("predict", help="classify images with a trained run (or any model source)")
    predict.add_argument("source", help="run folder or model source")
    predict.add_argument("images", nargs="*", help="image files or folders (default: a few of the run's validation images)")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--json", action="store_true")
    predict.add_argument("--csv", metavar="FILE", help="also write every prediction to this CSV file "
                                                       "(one row per image, with not_sure and error columns)")
    predict.add_argument("--not-sure-below", type=float, metavar="P",
                         help="call a prediction not sure when its top probability is below P, 0 to 1 "
                              "(default 0.6, as in the window)")
    predict.add_argument("--trust", action="store_true", help=_TRUST_HELP)
    predict.set_defaults(handler=_predict)

    explain = commands.add_parser("explain", help="draw a heatmap of where the model looks for a class (Grad-CAM)")
    explain.add_argument("source", help="run folder or model source")
    explain.add_argument("image", help="image file to explain")
    explain.add_argument("--class", dest="target", metavar="NAME",
                         help="class to explain, by name (or index); default: the predicted class")
    explain.add_argument("--opacity", type=float, default=0.5, help="heatmap opacity over the image, 0 to 1 (default 0.5)")
    explain.add_argument("-o", "--output", required=True, help="image file to write (.png, .jpg, .webp)")
    explain.add_argument("--trust", action="store_true", help=_TRUST_HELP)
    explain.set_defaults(handler=_explain)

    export = commands.add_parser("export", help="export a run as TorchScript or ONNX, with a parity check")
    export.add_argument("source", help="run folder or model source")
    export.add_argument("--format", choices=["torchscript", "onnx"], required=True)
    export.add_argument("-o", "--output", required=True, help="file to write")
    export.add_argument("--trust", action="store_true", help=_TRUST_HELP)
    export.set_defaults(handler=_export)

    issues = commands.add_parser("label-issues", help="rank a run's training images by how likely their label is wrong")
    issues.add_argument("run", help="run folder (or any model source: only its backbone is used)")
    issues.add_argument("data", help="the run's image folder (one subfolder per class)")
    issues.add_argument("--top", type=int, metavar="N",
                        help="show the N most likely issues (default: the ones confident learning flags)")
    issues.add_argument("--json", action="store_true", help="print one JSON object")
    issues.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    issues.add_argument("--trust", action="store_true", help=_TRUST_HELP)
    issues.set_defaults(handler=_label_issues)

    embed = commands.add_parser("embed", help="draw a map of an image folder by the model's features (t-SNE or PCA)")
    embed.add_argument("run", help="run folder (or any model source: its backbone places the images)")
    embed.add_argument("data", help="image folder (one subfolder per class)")
    embed.add_argument("-o", "--output", required=True,
                       help="file to write: .csv (path, label, predicted, misclassified, x, y per image) or .png")
    embed.add_argument("--method", choices=["tsne", "pca"], default="tsne",
                       help="t-SNE (default: neighbours stay together) or the first two principal components (fast)")
    embed.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    embed.add_argument("--trust", action="store_true", help=_TRUST_HELP)
    embed.set_defaults(handler=_embed)

    demo = commands.add_parser("demo-data", help="write the handwritten digits dataset as image folders")
    demo.add_argument("directory", help="folder to write (one subfolder per digit)")
    demo.set_defaults(handler=_demo_data)
    return parser


_TRAIN_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--freeze",), dict(choices=["head", "gradual", "last-k", "full"], default="head",
                         help="what trains: the head only (default), head then backbone, the last k blocks, or all")),
    (("--unfreeze-after",), dict(type=int, default=2, help="gradual: epochs before the backbone unfreezes")),
    (("--last-k",), dict(type=int, default=1, help="last-k: backbone blocks that train")),
    (("--epochs",), dict(type=int, default=10)),
    (("--batch-size",), dict(type=int, default=32)),
    (("--lr",), dict(type=float, default=None, help="learning rate (default: 1e-2 for --freeze head, else 1e-3)")),
    (("--weight-decay",), dict(type=float, default=0.01)),
    (("--optimizer",), dict(choices=["adamw", "sgd"], default="adamw")),
    (("--schedule",), dict(choices=["cosine", "onecycle", "constant"], default="cosine")),
    (("--label-smoothing",), dict(type=float, default=0.0)),
    (("--class-weights",), dict(action="store_true", help="weight the loss by inverse class frequency")),
    (("--grad-clip",), dict(type=float, default=None, help="clip the gradient norm")),
    (("--image-size",), dict(type=int, default=None, help="input size in pixels, 8 to 2048 (default: the model's own)")),
    (("--val-fraction",), dict(type=float, default=0.2)),
    (("--augment",), dict(choices=["none", "light", "strong"], default="none")),
    (("--device",), dict(default="auto", help="auto, cpu, cuda, cuda:N or mps")),
    (("--precision",), dict(choices=["auto", "fp32", "bf16", "fp16"], default="auto")),
    (("--seed",), dict(type=int, default=0)),
    (("--workers",), dict(type=int, default=0, help="image-decoding processes (0: in-process)")),
    (("--threads",), dict(type=int, default=None, help="CPU threads (default: all cores)")),
    (("--patience",), dict(type=int, default=None, help="stop after this many epochs without improvement")),
]
"""The training options: one table builds the parser and says what a flag left at its
default means on ``--resume`` (keep the run's recorded value)."""

_CONFIG_FIELD = {"threads": "cpu_threads"}  # argument dest → TrainConfig field, where they differ
_HEAD_ARGUMENTS = ("head", "hidden", "activation", "dropout", "norm")


_TRUST_HELP = "allow pickled files that can run code (only files you trust)"


def _add_source_arguments(parser: argparse.ArgumentParser, *, optional: bool = False) -> None:
    parser.add_argument("source", nargs="?" if optional else None,
                        help="model source (demo, torchvision:resnet50, timm:NAME, hf:DIR, a file or folder)")
    parser.add_argument("--arch", help="architecture of a weights file, e.g. torchvision:resnet50")
    parser.add_argument("--trust", action="store_true", help=_TRUST_HELP)
    parser.add_argument("--download", action="store_true", help="download pretrained weights that are not cached")
    parser.add_argument("--head-path", action="append", dest="head_paths", metavar="PATH",
                        help="the head layer's path, when detection fails (repeatable)")


_HEAD_DEFAULTS: dict[str, Any] = {"head": "linear", "hidden": [512], "activation": "relu", "dropout": 0.0, "norm": "none"}


def _add_head_arguments(parser: argparse.ArgumentParser) -> None:
    d = _HEAD_DEFAULTS
    parser.add_argument("--head", choices=["linear", "mlp"], default=d["head"], help="new head design")
    parser.add_argument("--hidden", type=int, nargs="+", default=d["hidden"], help="MLP hidden sizes")
    parser.add_argument("--activation", choices=["relu", "gelu", "silu", "tanh"], default=d["activation"])
    parser.add_argument("--dropout", type=float, default=d["dropout"], help="dropout before each layer of the head")
    parser.add_argument("--norm", choices=["none", "batchnorm", "layernorm"], default=d["norm"], help="MLP normalisation")


def _head_spec(args: argparse.Namespace) -> Any:
    from .core.heads import HeadSpec

    return HeadSpec(args.head, tuple(args.hidden), args.activation, args.dropout, args.norm)


def _load(args: argparse.Namespace, *, structure_only: bool = False) -> Any:
    from .core.sources import load_model

    return load_model(args.source, arch=args.arch, trust=args.trust, download=args.download,
                      structure_only=structure_only)


def _inspect(args: argparse.Namespace) -> int:
    from .core.errors import HeadNotFoundError
    from .core.module_tree import inspect_model, render_tree

    loaded = _load(args, structure_only=True)
    inspection = inspect_model(loaded.model, loaded.preprocessing.input_size, args.head_paths)
    if inspection.problem:
        raise HeadNotFoundError(inspection.problem)
    heads, tree = list(inspection.heads), inspection.tree
    if args.json:
        report = {
            "model": {
                "source": loaded.source,
                "architecture": loaded.architecture,
                "class": type(loaded.model).__name__,
                "parameters": loaded.parameter_count,
                "weights": loaded.weights,
                "preprocessing": loaded.preprocessing.to_dict(),
                "num_class_names": len(loaded.class_names) if loaded.class_names else 0,
            },
            "heads": [head.to_dict() for head in heads],
            "layers": tree.to_dict(),
        }
        print(json.dumps(report, indent=2))
        return 0
    print(f"{loaded.source}: {type(loaded.model).__name__}, {loaded.parameter_count:,} parameters ({loaded.weights})")
    print(f"preprocessing: {loaded.preprocessing.describe()}")
    for note in loaded.notes:
        print(f"note: {note}")
    print(render_tree(tree, args.depth))
    print()
    for head in heads:
        print(f"head ({head.role}): {head.path} — {head.type_name} {head.in_features} → {head.out_features}; found by {head.found_by}")
    return 0


def _swap(args: argparse.Namespace) -> int:
    from .core.runs import save_model_folder
    from .core.sources import swap_head

    loaded = _load(args)
    names = [name.strip() for name in args.class_names.split(",")] if args.class_names else None
    heads = swap_head(loaded, args.classes, _head_spec(args), class_names=names, head_paths=args.head_paths)
    folder = save_model_folder(args.output, loaded, overwrite=args.force)
    for head in heads:
        print(f"swapped {head.path} ({head.role}): {head.type_name} {head.in_features} → {head.out_features}")
    print(f"saved {folder}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from .core.sources import timm_architectures, torchvision_classifiers

    names = torchvision_classifiers() if args.library == "torchvision" else timm_architectures()
    for name in names:
        if args.pattern.lower() in name.lower():
            print(f"{args.library}:{name}")
    return 0


def _demo_data(args: argparse.Namespace) -> int:
    from .core.demo_data import write_digits_dataset

    info = write_digits_dataset(Path(args.directory))
    print(f"wrote {len(info.samples)} images in {len(info.class_names)} classes to {args.directory}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .cli_progress import ProgressPrinter
    from .core.data import printable_path, scan_image_folder
    from .core.distributed import is_main_process, launch_env
    from .core.errors import HeadswapError
    from .core.run_index import new_run_folder
    from .core.run_store import folder_kind
    from .core.sources import load_model, swap_head
    from .core.training import fit

    if args.config:
        _apply_config_file(args)
    if args.source is None or args.data is None:
        raise HeadswapError("train needs a model SOURCE and an image folder DATA (or --config FILE naming them)")
    main_process = is_main_process()
    say = sys.stderr if main_process else open(os.devnull, "w")  # noqa: SIM115 - the process's lifetime
    if args.output is None:
        if args.resume:
            raise HeadswapError("--resume needs the run folder: name it with -o (`headswap runs` lists them)")
        if launch_env() is not None:
            raise HeadswapError("under torchrun every process must write the same run folder: name it with -o")
        args.output = str(new_run_folder())
        print(f"run folder: {args.output}", file=sys.stderr)
    dataset = scan_image_folder(args.data)
    print(dataset.summary(), file=say)
    if args.show_skipped:
        for skipped in dataset.skipped:
            print(f"skipped {printable_path(skipped.path)}: {skipped.reason}", file=say)
    elif dataset.skipped:
        print("(--show-skipped lists them by name; headswap.json records them)", file=say)
    resume = args.resume and folder_kind(args.output) is not None
    if args.resume and not resume:
        print(f"note: nothing to resume in {args.output} yet; starting the run there", file=say)
    heads = None  # the heads swap_head has just found, which spares fit a trace of the model
    if resume:
        config = _resume_config(args)
        loaded = load_model(args.output)
    else:
        config = _train_config(args)
        loaded = _load(args)
        heads = swap_head(loaded, len(dataset.class_names), _head_spec(args), class_names=dataset.class_names,
                          head_paths=args.head_paths, seed=config.seed)  # the window's Seed builds the same head
    printer = ProgressPrinter(say)
    finished = None
    stop = threading.Event()
    events = fit(loaded, dataset, config, args.output, stop=stop, resume=resume, head_spec=_head_spec(args),
                 heads=heads, overwrite=args.force)
    with _stop_on_signals(stop) as signals:
        for event in events:
            printer.show(event)
            finished = event
    if not main_process and finished is not None and finished.reason == "failed":
        print(f"headswap: {finished.message}", file=sys.stderr)  # rank 0 prints everything else
    if signals:
        return 128 + signals[0]
    return 0 if finished is not None and finished.reason in ("completed", "early-stopped", "stopped") else 1


def _runs(args: argparse.Namespace) -> int:
    from .core.run_index import default_runs_root, list_runs

    root = Path(args.root) if args.root else default_runs_root()
    summaries = list_runs(root)
    if args.json:
        print(json.dumps([s.to_dict() for s in summaries], indent=2, ensure_ascii=False))
        return 0
    if not summaries:
        print(f"no runs in {root}", file=sys.stderr)
        return 0
    print(f"{'started':<20} {'status':<13} {'epochs':>7} {'best val':>8}  {'model':<28} {'classes':>7}  folder")
    for s in summaries:
        epochs = f"{s.epochs_done}/{s.epochs_planned}" if s.epochs_planned else str(s.epochs_done)
        best = f"{s.best_val_accuracy:.1%}" if s.best_val_accuracy is not None else "–"
        started = (s.started_at or "")[:19].replace("T", " ")
        print(f"{started:<20} {s.status:<13} {epochs:>7} {best:>8}  {(s.source or '?')[:28]:<28} "
              f"{len(s.class_names):>7}  {s.folder}")
        if s.problem:
            print(f"{'':<20} {s.problem}")
    return 0


def _train_config(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from .core.training import TrainConfig, suggested_lr

    spec = getattr(args, "config_spec", None)
    if spec is not None:  # the file's settings, with the flags given on this command line on top
        config = replace(spec.config, **_given_train_options(args))
        return config if config.cpu_threads else replace(config, cpu_threads=_default_threads())
    values = {_CONFIG_FIELD.get(dest, dest): getattr(args, dest) for dest in _train_option_defaults()}
    if values["lr"] is None:
        values["lr"] = suggested_lr(args.freeze)
    if values["cpu_threads"] is None:
        values["cpu_threads"] = _default_threads()
    return TrainConfig(**values)


def _default_threads() -> int:
    """All cores, shared by the processes torchrun started on this machine."""
    from .core.devices import cpu_cores
    from .core.distributed import cores_per_process

    return cores_per_process(cpu_cores())


def _given_train_options(args: argparse.Namespace) -> dict[str, Any]:
    """The training flags this command line set (left at their defaults they say nothing)."""
    return {
        _CONFIG_FIELD.get(dest, dest): getattr(args, dest)
        for dest, default in _train_option_defaults().items()
        if getattr(args, dest) != default
    }


def _apply_config_file(args: argparse.Namespace) -> None:
    """Take SOURCE, DATA, -o and the head from ``--config`` where the command line left them
    out; the file's training settings become the defaults (see :func:`_train_config`)."""
    from .core.run_spec import read_train_spec

    spec = read_train_spec(args.config)
    args.config_spec = spec
    args.source = args.source or spec.source
    args.data = args.data or spec.data
    args.output = args.output or spec.output
    if spec.head is not None and all(getattr(args, name) == _HEAD_DEFAULTS[name] for name in _HEAD_ARGUMENTS):
        head = spec.head
        args.head, args.hidden, args.activation = head.design, list(head.hidden), head.activation
        args.dropout, args.norm = head.dropout, head.norm


def _resume_config(args: argparse.Namespace) -> Any:
    """The run's recorded settings with the flags given on this command line on top; the
    engine refuses those that would change what the run learns."""
    from dataclasses import replace

    from .core.errors import RunFolderError, RunSettingsError
    from .core.run_manifest import KIND_TRAINING_RUN, manifest_kind, read_manifest
    from .core.training import TrainConfig

    recorded = read_manifest(args.output)
    if manifest_kind(recorded) != KIND_TRAINING_RUN:
        raise RunFolderError(f"nothing to resume in {args.output}: it holds no training run (train into it first)")
    given = [name for name in _HEAD_ARGUMENTS if getattr(args, name) != _HEAD_DEFAULTS[name]] + (
        ["--head-path"] if args.head_paths else []
    )
    if given:
        raise RunSettingsError(
            f"the run in {args.output} keeps the head it was trained with; --resume takes no head options "
            f"(given: {', '.join(given)}); start a new run for another head"
        )
    source = recorded.get("source")
    if args.source not in (source, args.output) and Path(args.source).resolve() != Path(args.output).resolve():
        raise RunSettingsError(
            f"the run in {args.output} was trained from {source}, not {args.source}; resume it with the same "
            "source (or the run folder itself), or start a new run"
        )
    config = TrainConfig.from_dict(recorded["training"])
    changes = _given_train_options(args)
    changes.setdefault("cpu_threads", _default_threads())
    return replace(config, **changes)


def _train_option_defaults() -> dict[str, Any]:
    return {flags[0].lstrip("-").replace("-", "_"): options.get("default", False) for flags, options in _TRAIN_OPTIONS}


def _predict(args: argparse.Namespace) -> int:
    from .core.data import printable_path
    from .core.errors import HeadswapError
    from .core.export import sample_images
    from .core.images import is_image_file
    from .core.predict import NOT_SURE_BELOW, predict_images, write_predictions_csv
    from .core.sources import load_model

    threshold = NOT_SURE_BELOW if args.not_sure_below is None else args.not_sure_below
    if not 0.0 <= threshold <= 1.0:
        raise HeadswapError(f"--not-sure-below is a probability from 0 to 1, not {args.not_sure_below:g}")
    loaded = load_model(args.source, trust=args.trust)
    images: list[str] = []
    for item in args.images:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.is_file() and is_image_file(p))
            if not found:
                raise HeadswapError(f"{printable_path(item)} holds no image files ({', '.join(_IMAGE_KINDS)})")
            images.extend(found)
        elif path.exists():
            images.append(item)
        else:
            raise HeadswapError(f"no such image or folder: {printable_path(item)}")
    if not args.images:
        images = sample_images(loaded)
        if not images:
            raise HeadswapError("no images to classify: name image files or a folder")
    predictions = predict_images(loaded, images, args.top_k)
    failed = [p for p in predictions if p.error is not None]
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions], indent=2, ensure_ascii=False))
    else:
        for prediction in predictions:
            if prediction.error is None:
                ranked = ", ".join(f"{label} {p:.1%}" for label, p in zip(prediction.labels, prediction.probabilities))
                doubt = " (not sure)" if prediction.not_sure(threshold) else ""
                print(f"{printable_path(prediction.image)}: {ranked}{doubt}")
    for prediction in failed:
        print(f"headswap: {printable_path(prediction.image)}: {prediction.error}", file=sys.stderr)
    if args.csv:  # after the printout, so a file that cannot be written loses no results
        write_predictions_csv(args.csv, predictions, threshold)
        unsure = sum(1 for p in predictions if p.not_sure(threshold))
        count = f"{len(predictions)} prediction{'' if len(predictions) == 1 else 's'}"
        print(f"headswap: wrote {count} ({unsure} not sure) to {printable_path(args.csv)}", file=sys.stderr)
    if failed:
        print(f"headswap: {len(failed)} of {len(predictions)} images could not be classified", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


_IMAGE_KINDS = ("jpg", "png", "bmp", "gif", "webp", "tif", "ppm", "pgm")


def _explain(args: argparse.Namespace) -> int:
    from .core.data import printable_path
    from .core.errors import HeadswapError
    from .core.explain import explain_image, write_overlay
    from .core.sources import load_model

    if not 0.0 <= args.opacity <= 1.0:
        raise HeadswapError(f"--opacity is a number from 0 to 1, not {args.opacity:g}")
    loaded = load_model(args.source, trust=args.trust)
    target: int | str | None = args.target
    names = loaded.class_names or ()
    if isinstance(target, str) and target not in names and target.strip().isdigit():
        target = int(target)  # an index, where no class is called that
    explanation = explain_image(loaded, args.image, target)
    write_overlay(args.output, explanation, opacity=args.opacity)
    print(f"{printable_path(args.output)}: heatmap for {explanation.describe()}")
    if explanation.empty:
        print(f"headswap: nothing in the image speaks for {explanation.label}: the heatmap is empty", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .core.errors import HeadswapError
    from .core.export import export_model
    from .core.run_lock import RunLock
    from .core.run_manifest import MANIFEST_FILE
    from .core.sources import load_model

    target = Path(args.output)
    if target.is_dir():
        suffix = "onnx" if args.format == "onnx" else "pt"
        raise HeadswapError(f"{target} is a folder; give a file name, e.g. {target / f'model.{suffix}'}")
    loaded = load_model(args.source, trust=args.trust)
    folder = target.parent if (target.parent / MANIFEST_FILE).is_file() else None
    lock = RunLock(folder) if folder is not None else None  # no run may commit into it meanwhile
    try:
        report = export_model(loaded, args.format, args.output)
    finally:
        if lock is not None:
            lock.release()
    print(report.describe())
    return 0


def _drive_job(events: Iterator[object], stop: threading.Event, started_type: type, announce: Callable[[Any], str],
               finished_type: type, what: str) -> tuple[Any, int]:
    """Run one analysis job's events to the end on the terminal. Every such job needs the same
    live progress line, Ctrl-C/SIGTERM handling and "ended early" message, so one place has them.

    Returns (the finished event, 0), or (None, 128 + signal) when a signal stopped the job.
    """
    from .cli_progress import ProgressPrinter
    from .core.errors import HeadswapError

    printer = ProgressPrinter(sys.stderr)
    finished, redrawn = None, False
    with _stop_on_signals(stop) as signals:
        for event in events:
            if isinstance(event, started_type):
                print(announce(event), file=sys.stderr)
            elif isinstance(event, finished_type):
                finished = event
            else:
                printer.show(event)
                redrawn = sys.stderr.isatty()
    if redrawn:
        print(file=sys.stderr)  # end the live progress line
    if signals:
        return None, 128 + signals[0]
    if finished is None or finished.info is None:
        raise HeadswapError(finished.message if finished is not None else f"{what} ended early")
    return finished, 0


def _label_issues(args: argparse.Namespace) -> int:
    from .core.data import printable_path, scan_image_folder
    from .core.devices import cpu_cores
    from .core.errors import HeadswapError
    from .core.label_issues import LabelCheckConfig, LabelCheckFinished, LabelCheckStarted, find_label_issues
    from .core.sources import load_model

    if args.top is not None and args.top < 1:
        raise HeadswapError(f"--top is a number of images, 1 or more, not {args.top}")
    loaded = load_model(args.run, trust=args.trust)
    dataset = scan_image_folder(args.data)
    stop = threading.Event()
    events = find_label_issues(loaded, dataset, LabelCheckConfig(device=args.device, cpu_threads=cpu_cores()), stop=stop)

    def announce(event: LabelCheckStarted) -> str:
        broken = f" and {event.broken} broken file{'s' if event.broken != 1 else ''}" if event.broken else ""
        return (f"checking the labels of {event.images:,} training images{broken} in {len(event.class_names)} "
                f"classes on {event.device} ({event.folds}-fold)")

    finished, exit_code = _drive_job(events, stop, LabelCheckStarted, announce, LabelCheckFinished, "the label check")
    if finished is None:
        return exit_code
    info = finished.info
    shown = info.top(args.top) if args.top is not None else info.flagged
    print(finished.message, file=sys.stderr)
    if args.json:
        report = {
            "run": loaded.source,
            "data": dataset.root,
            "images": info.images,
            "folds": info.folds,
            "out_of_fold_accuracy": info.out_of_fold_accuracy,
            "flagged": len(info.flagged),
            "issues": [issue.to_dict() for issue in shown],
        }
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    if not shown:
        print("no likely label issues; --top N lists the N lowest-scoring images anyway", file=sys.stderr)
        return 0
    rows = [
        (
            printable_path(os.path.join(args.data, os.path.relpath(issue.path, dataset.root))),
            issue.given_label,
            issue.suggested_label if issue.kind == "label" else f"(broken: {issue.reason})",
            f"{issue.score:.3f}",
        )
        for issue in shown
    ]
    widths = [max(len(row[i]) for row in rows + [("file", "given", "suggested", "score")]) for i in range(3)]
    print(f"{'file':<{widths[0]}}  {'given':<{widths[1]}}  {'suggested':<{widths[2]}}  score")
    for file, given, suggested, score in rows:
        print(f"{file:<{widths[0]}}  {given:<{widths[1]}}  {suggested:<{widths[2]}}  {score}")
    if args.top is None and len(shown) < len(info.issues):
        print(f"({len(shown)} flagged of {len(info.issues):,}; --top N lists the N lowest-scoring images)", file=sys.stderr)
    return 0


def _embed(args: argparse.Namespace) -> int:
    from .core.atomic import refuse_folder
    from .core.data import printable_path, scan_image_folder
    from .core.devices import cpu_cores
    from .core.embedding import (
        EmbeddingConfig,
        EmbeddingFinished,
        EmbeddingStarted,
        compute_embedding,
        write_map_csv,
        write_map_png,
    )
    from .core.errors import HeadswapError
    from .core.sources import load_model

    refuse_folder(args.output, "map.csv")  # before the work, not after it
    extension = os.path.splitext(args.output)[1].lower()
    if extension not in (".csv", ".png"):
        raise HeadswapError(f"cannot tell what to write to {printable_path(args.output)}: end the name in .csv or .png")
    loaded = load_model(args.run, trust=args.trust)
    dataset = scan_image_folder(args.data)
    stop = threading.Event()
    config = EmbeddingConfig(method=args.method, device=args.device, cpu_threads=cpu_cores())
    events = compute_embedding(loaded, dataset, config, stop=stop)

    def announce(event: EmbeddingStarted) -> str:
        method = "t-SNE" if event.method == "tsne" else "PCA"
        return f"mapping {event.images:,} images in {len(event.class_names)} classes by {method} on {event.device}"

    finished, exit_code = _drive_job(events, stop, EmbeddingStarted, announce, EmbeddingFinished, "the map")
    if finished is None:
        return exit_code
    (write_map_png if extension == ".png" else write_map_csv)(args.output, finished.info)
    print(f"{finished.message}; wrote {printable_path(args.output)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
