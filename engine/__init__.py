"""Orchestration: catalogs, the build pipeline, queries, what is learned, and evaluation."""

from vitrina import __version__

__all__ = ["__version__"]
