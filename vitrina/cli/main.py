"""`vitrina`: the parser assembled from the command groups, and `main`, which runs one command."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from vitrina.cli import build, demo, evaluate, events, export, learn, query, rules, serve, synonyms
from vitrina.cli.common import run_reporting_errors
from vitrina.engine import __version__

# Each adds its commands to the subparsers, in the order `vitrina --help` lists them (part of the contract).
COMMAND_GROUPS = (
    build.add_parsers,  # index, reindex, upsert, delete
    rules.add_parsers,  # rules
    synonyms.add_parsers,  # synonyms
    query.add_parsers,  # search, similar
    evaluate.add_parsers,  # eval text|image|cross-modal
    learn.add_parsers,  # train-text, train
    export.add_parsers,  # export-onnx
    events.add_parsers,  # events add|forget, recommend
    serve.add_parsers,  # serve
    query.add_info_parser,  # info
    demo.add_parsers,  # demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitrina", description="Multimodal product search for e-commerce catalogs.")
    parser.add_argument("--version", action="version", version=f"vitrina {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parsers in COMMAND_GROUPS:
        add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="vitrina: %(message)s")
    if getattr(args, "batch_size", 1) is not None and getattr(args, "batch_size", 1) < 1:
        print("vitrina: error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    return run_reporting_errors(args)


if __name__ == "__main__":
    sys.exit(main())
