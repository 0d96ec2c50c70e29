"""The `vitrina` command line: one module per command group over the Python API."""

from vitrina.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
