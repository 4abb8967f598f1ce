"""The ``headswap`` command: inspect, swap, train, predict and export over the same core
the window uses.

Every problem with the user's input ends in one line on stderr and a non-zero exit status,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_USER_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .core.errors import HeadswapError

    try:
        return int(args.handler(args) or 0)
    except HeadswapError as error:
        print(f"headswap: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("headswap: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - last resort: one line, the traceback on request
        if os.environ.get("HEADSWAP_DEBUG"):
            raise
        print(
            f"headswap: unexpected error ({type(error).__name__}: {error}); "
            "rerun with HEADSWAP_DEBUG=1 to see the traceback and please report it",
            file=sys.stderr,
        )
        return 1


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
    swap.set_defaults(handler=_swap)

    models = commands.add_parser("models", help="list the model names a source offers")
    models.add_argument("library", choices=["torchvision", "timm"], help="which zoo")
    models.add_argument("pattern", nargs="?", default="", help="only names containing this")
    models.set_defaults(handler=_models)

    train = commands.add_parser("train", help="fine-tune on an image folder (one subfolder per class)")
    _add_source_arguments(train)
    train.add_argument("data", help="image folder: one subfolder per class, or train/ and val/ inside")
    train.add_argument("-o", "--output", required=True, help="run folder to write (a model source afterwards)")
    _add_head_arguments(train)
    train.add_argument("--freeze", choices=["head", "gradual", "last-k", "full"], default="head",
                       help="what trains: the head only (default), head then backbone, the last k blocks, or all")
    train.add_argument("--unfreeze-after", type=int, default=2, help="gradual: epochs before the backbone unfreezes")
    train.add_argument("--last-k", type=int, default=1, help="last-k: backbone blocks that train")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--lr", type=float, default=None, help="learning rate (default: 1e-2 for --freeze head, else 1e-3)")
    train.add_argument("--weight-decay", type=float, default=0.01)
    train.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    train.add_argument("--schedule", choices=["cosine", "onecycle", "constant"], default="cosine")
    train.add_argument("--label-smoothing", type=float, default=0.0)
    train.add_argument("--class-weights", action="store_true", help="weight the loss by inverse class frequency")
    train.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm")
    train.add_argument("--image-size", type=int, default=None, help="input size (default: the model's own)")
    train.add_argument("--val-fraction", type=float, default=0.2)
    train.add_argument("--augment", choices=["none", "light", "strong"], default="none")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    train.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--workers", type=int, default=0, help="image-decoding processes (0: in-process)")
    train.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    train.add_argument("--patience", type=int, default=None, help="stop after this many epochs without improvement")
    train.add_argument("--resume", action="store_true", help="continue the run in --output from its last epoch")
    train.set_defaults(handler=_train)

    predict = commands.add_parser("predict", help="classify images with a trained run (or any model source)")
    predict.add_argument("source", help="run folder or model source")
    predict.add_argument("images", nargs="*", help="image files or folders (default: a few of the run's validation images)")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(handler=_predict)

    export = commands.add_parser("export", help="export a run as TorchScript or ONNX, with a parity check")
    export.add_argument("source", help="run folder or model source")
    export.add_argument("--format", choices=["torchscript", "onnx"], required=True)
    export.add_argument("-o", "--output", required=True, help="file to write")
    export.set_defaults(handler=_export)

    demo = commands.add_parser("demo-data", help="write the handwritten digits dataset as image folders")
    demo.add_argument("directory", help="folder to write (one subfolder per digit)")
    demo.set_defaults(handler=_demo_data)
    return parser


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="model source (demo, torchvision:resnet50, timm:NAME, hf:DIR, a file or folder)")
    parser.add_argument("--arch", help="architecture of a weights file, e.g. torchvision:resnet50")
    parser.add_argument("--trust", action="store_true", help="allow pickled files that can run code (only files you trust)")
    parser.add_argument("--download", action="store_true", help="download pretrained weights that are not cached")
    parser.add_argument("--head-path", action="append", dest="head_paths", metavar="PATH",
                        help="the head layer's path, when detection fails (repeatable)")


def _add_head_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--head", choices=["linear", "mlp"], default="linear", help="new head design")
    parser.add_argument("--hidden", type=int, nargs="+", default=[512], help="MLP hidden sizes")
    parser.add_argument("--activation", choices=["relu", "gelu", "silu", "tanh"], default="relu")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout before each layer of the head")
    parser.add_argument("--norm", choices=["none", "batchnorm", "layernorm"], default="none", help="MLP normalisation")


def _head_spec(args: argparse.Namespace) -> Any:
    from .core.heads import HeadSpec

    return HeadSpec(args.head, tuple(args.hidden), args.activation, args.dropout, args.norm)


def _load(args: argparse.Namespace, *, structure_only: bool = False) -> Any:
    from .core.sources import load_model

    return load_model(args.source, arch=args.arch, trust=args.trust, download=args.download,
                      structure_only=structure_only)


def _inspect(args: argparse.Namespace) -> int:
    from .core.errors import HeadError
    from .core.module_tree import inspect_model, render_tree

    loaded = _load(args, structure_only=True)
    inspection = inspect_model(loaded.model, loaded.preprocessing.input_size, args.head_paths)
    if inspection.problem:
        raise HeadError(inspection.problem)
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
    folder = save_model_folder(args.output, loaded)
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
    import torch

    from .core.data import scan_image_folder
    from .core.devices import cpu_cores
    from .core.sources import swap_head
    from .core.training import TrainConfig, fit, suggested_lr
    from .cli_progress import ProgressPrinter

    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr or suggested_lr(args.freeze),
        weight_decay=args.weight_decay, optimizer=args.optimizer, schedule=args.schedule,
        label_smoothing=args.label_smoothing, class_weights=args.class_weights, grad_clip=args.grad_clip,
        freeze=args.freeze, unfreeze_after=args.unfreeze_after, last_k=args.last_k, augment=args.augment,
        image_size=args.image_size, val_fraction=args.val_fraction, seed=args.seed, device=args.device,
        precision=args.precision, workers=args.workers, patience=args.patience,
        cpu_threads=args.threads or cpu_cores(),
    )
    dataset = scan_image_folder(args.data)
    print(dataset.summary(), file=sys.stderr)
    if args.resume:
        from .core.sources import load_model

        loaded = load_model(args.output)
    else:
        loaded = _load(args)
        torch.manual_seed(args.seed)  # the new head's initial weights repeat with the seed
        swap_head(loaded, len(dataset.class_names), _head_spec(args), class_names=dataset.class_names,
                  head_paths=args.head_paths)
    printer = ProgressPrinter(sys.stderr)
    finished = None
    for event in fit(loaded, dataset, config, args.output, resume=args.resume, head_spec=_head_spec(args)):
        printer.show(event)
        finished = event
    return 0 if finished is not None and finished.reason in ("completed", "early-stopped", "stopped") else 1


def _predict(args: argparse.Namespace) -> int:
    from .core.errors import HeadswapError
    from .core.export import sample_images
    from .core.images import is_image_file
    from .core.predict import predict_images
    from .core.sources import load_model

    loaded = load_model(args.source)
    images: list[str] = []
    for item in args.images:
        path = Path(item)
        images.extend(sorted(str(p) for p in path.rglob("*") if is_image_file(p)) if path.is_dir() else [item])
    images = images or sample_images(loaded)
    if not images:
        raise HeadswapError("no images to classify: name image files or a folder")
    predictions = predict_images(loaded, images, args.top_k)
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions], indent=2))
        return 0
    for prediction in predictions:
        ranked = ", ".join(f"{label} {p:.1%}" for label, p in zip(prediction.labels, prediction.probabilities))
        print(f"{prediction.image}: {ranked}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .core.export import export_model
    from .core.sources import load_model

    report = export_model(load_model(args.source), args.format, args.output)
    print(report.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
