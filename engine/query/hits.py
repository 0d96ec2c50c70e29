"""What a query and its answers look like: a cleaned query text, a bounded k, and SearchHit."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from vitrina.engine.errors import QueryError

MAX_K = 10_000
MAX_QUERY_CHARS = 512
log = logging.getLogger("vitrina")


@dataclass(frozen=True)
class SearchHit:
    id: str
    score: float
    metadata: dict[str, Any]

    @property
    def product(self) -> dict[str, Any]:
        """The product's catalog row (its columns but the id), as `metadata`."""
        return self.metadata

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "score": round(float(self.score), 6), **self.metadata}


def check_k(k: int) -> int:
    if not 1 <= k <= MAX_K:
        raise QueryError(f"k must be between 1 and {MAX_K}, got {k}")
    return k


def clean_query(query: str) -> str:
    """Whitespace and control characters collapsed; empty queries refused, very long ones truncated.

    Case, punctuation, accents and units are folded later by each retriever's own analyser.
    """
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in str(query)).split())
    if not text:
        raise QueryError("the query is empty; give some words to search for")
    if len(text) > MAX_QUERY_CHARS:
        cut = text[:MAX_QUERY_CHARS].rsplit(" ", 1)[0] or text[:MAX_QUERY_CHARS]
        log.warning("query of %d characters truncated to its first %d: %r...", len(text), len(cut), cut[:40])
        text = cut
    return text
