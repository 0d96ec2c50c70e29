"""`vitrina`: the parser assembled from the command groups, and `main`, which runs one command."""

from __future__ import annotations

import argparse
import atexit
import gc
import logging
import sys
from typing import Any, Callable, Sequence

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


class _Skipped:
    """Stands in for the parser of a command not being run: takes every call and does nothing."""

    def __getattr__(self, name: str) -> Callable[..., "_Skipped"]:
        return lambda *args, **kwargs: self


class _OnlyCommand:
    """The subparsers action, adding the parser of one command only (`only`); the others are skipped."""

    def __init__(self, sub: argparse._SubParsersAction, only: str) -> None:
        self.sub, self.only, self.found = sub, only, False

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if name != self.only and self.only not in kwargs.get("aliases", ()):
            return _Skipped()
        self.found = True
        return self.sub.add_parser(name, **kwargs)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `vitrina` parser; with `command`, holding that command's parser only (building all ~20 costs a fresh
    process tens of milliseconds); a command no group adds gets the whole parser (its error lists them)."""
    parser = argparse.ArgumentParser(prog="vitrina", description="Multimodal product search for e-commerce catalogs.")
    parser.add_argument("--version", action="version", version=f"vitrina {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command is not None:
        only = _OnlyCommand(sub, command)
        for add_parsers in COMMAND_GROUPS:
            add_parsers(only)
        if only.found:
            return parser
        return build_parser()
    for add_parsers in COMMAND_GROUPS:
        add_parsers(sub)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The command named by a command line (the first word not a flag: vitrina's own flags take no value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command `argv` names (default: the process's command line) and return its exit code.

    Run from the command line (no `argv`), what the command left in memory is frozen at exit: the process ends
    there, so the interpreter's last garbage collection need not walk it first (0.2 s after indexing 10,000
    products). A caller passing `argv` keeps its process's collections as they are."""
    from_command_line = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(command_of(argv)).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="vitrina: %(message)s")
    if getattr(args, "batch_size", 1) is not None and getattr(args, "batch_size", 1) < 1:
        print("vitrina: error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    if from_command_line:
        atexit.register(gc.freeze)
    return run_reporting_errors(args)


if __name__ == "__main__":
    sys.exit(main())
