"""The `vitrina` command line: one module per command group, each adding its parsers and thin handlers.

main (the parser in command order, and running one command), common (shared flags, the config from flags,
query files, answers, error reporting), build (index, reindex, upsert, delete), query (search, similar,
info), evaluate (eval), learn (train-text, train), export (export-onnx), events (events, recommend),
serve (serve), demo (demo), output (tables and JSON).
"""

from vitrina.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
