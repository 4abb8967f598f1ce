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
    from .core.module_tree import build_module_tree, render_tree

    loaded = _load(args, structure_only=True)
    heads = loaded.find_heads(args.head_paths)
    tree = build_module_tree(loaded.model, loaded.preprocessing.input_size, heads)
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


if __name__ == "__main__":
    sys.exit(main())
