"""What a query and its answers look like: a cleaned query text, a bounded k, SearchHit, and Hits (one answer)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
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
    variants: list[str] | None = None  # the other products of its group, best first; None: index not grouped
    matched_image: str | None = None  # several images per product: the image that matched, as the catalog names it
    matched_image_index: int | None = None  # ... and its ordinal among the product's images (0 first); None: text hits
    multi_image: bool = field(default=False, repr=False, compare=False)  # the index holds several images per product

    @property
    def product(self) -> dict[str, Any]:
        """The product's catalog row (its columns but the id), as `metadata`."""
        return self.metadata

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "score": round(float(self.score), 6), **self.metadata}
        if self.variants is not None:
            out["variants"] = list(self.variants)
        if self.multi_image:  # only indexes with several images per product carry the fields (null on text hits)
            out.update(matched_image=self.matched_image, matched_image_index=self.matched_image_index)
        return out


class Hits(list[SearchHit]):
    """One query's hits, best first: a plain list that also says whether it was personalised for a shopper,
    and which query was searched where typos were corrected.

    `personalised` is True when a shopper's behaviour re-ranked the hits, False when a shopper was asked for
    but had nothing to personalise by (plain results, or best sellers for `recommend`), None when no shopper was.
    `corrected_query` is the query with its misspelled words corrected to catalog words ("did you mean"),
    None when the query was searched as typed.
    With facets asked for, `facets`, `price_range` and `total` describe the matched set (see
    engine.query.compose); otherwise they are None.
    `rules_fired` lists the ids of the merchandising rules that acted on the answer (engine.query.rules).
    `suggestions` lists catalog words to try when the query fell below the relevance floor and the answer is
    empty (engine.query.calibration); otherwise it is [].
    """

    def __init__(self, hits: Iterable[SearchHit] = (), personalised: bool | None = None,
                 corrected_query: str | None = None, *, facets: dict[str, dict[str, int]] | None = None,
                 price_range: tuple[float, float] | None = None, total: int | None = None,
                 rules_fired: list[str] | None = None) -> None:
        super().__init__(hits)
        self.personalised = personalised
        self.corrected_query = corrected_query
        self.facets = facets  # column -> {value: count} over the matched set, when facets were asked for
        self.price_range = price_range  # (lowest, highest) known price of the matched set, with facets
        self.total = total  # the size of the matched set, when it was computed (facets, or a price sort)
        self.rules_fired = list(rules_fired or [])  # ids of the merchandising rules that acted, in file order
        self.suggestions: list[str] = []  # catalog words to try, when the relevance floor left this answer empty

    def facets_json(self) -> dict[str, Any]:
        """`{"facets": ..., "price": {"min", "max"} or None, "total": N}` for answers that asked for facets."""
        price = None if self.price_range is None else {"min": self.price_range[0], "max": self.price_range[1]}
        return {"facets": self.facets or {}, "price": price, "total": self.total}

    def __repr__(self) -> str:
        extra = "" if self.corrected_query is None else f", corrected_query={self.corrected_query!r}"
        if self.facets is not None:
            extra += f", facets={self.facets!r}, price_range={self.price_range!r}"
        if self.rules_fired:
            extra += f", rules_fired={self.rules_fired!r}"
        return f"Hits({list.__repr__(self)}, personalised={self.personalised!r}{extra})"


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
