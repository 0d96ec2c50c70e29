"""Orchestration: catalogs, the indexing pipeline, search sessions, configuration and the CLI."""

__version__ = "0.1.0"
