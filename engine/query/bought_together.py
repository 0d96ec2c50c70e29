"""`vitrina recommend --product ID`: "frequently bought together", from co-purchases.

Products bought in the same baskets as the given one (engine.learn.co_purchase), ranked by how many
baskets held both (ties: the product's own basket count, then catalog order), each hit marked
`source: "co-purchase"` with its count. A pair counts only once `min_shoppers` distinct shoppers
(default 2) bought it together, so no pair shown is one shopper's habit; on Online Retail that cost
no hit rate (validation window, benchmarks/bought_together.py). A short list (a product nobody bought with others, a new product, a strict
filter) is filled with the products most like it in the index's vector space (fused once trained, else
image, else text), marked `source: "similar"`. The product itself, its own product group and products
no longer in the index never appear. Answers hold counts only: no shopper or basket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from vitrina.engine.errors import QueryError
from vitrina.engine.learn.behaviour import BehaviourModel
from vitrina.engine.query.hits import SearchHit, check_k

if TYPE_CHECKING:
    from vitrina.engine.query.filters import PriceRange
    from vitrina.engine.query.search import SearchSession

CO_PURCHASE, SIMILAR = "co-purchase", "similar"
SCORINGS = ("count", "cosine")


@dataclass(frozen=True)
class BoughtTogetherConfig:
    """How co-purchases are ranked (defaults chosen on an Online Retail validation window, RESULTS.md)."""

    min_shoppers: int = 2  # a pair shows only when this many distinct shoppers bought it in one basket (privacy)
    scoring: str = "count"  # "count": baskets holding both; "cosine": count / sqrt(each product's baskets)
    fill: bool = True  # fill a short list with similar products

    def __post_init__(self) -> None:
        if self.min_shoppers < 1:
            raise QueryError(f"the minimum number of shoppers per pair must be at least 1, got {self.min_shoppers}")
        if self.scoring not in SCORINGS:
            raise QueryError(f"unknown co-purchase scoring {self.scoring!r}; choose one of {', '.join(SCORINGS)}")


@dataclass(frozen=True)
class BoughtTogetherHit(SearchHit):
    """A hit with where it came from: "co-purchase" (with the number of baskets holding both) or "similar"."""

    source: str = SIMILAR
    co_purchases: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = {**super().to_json(), "source": self.source}
        return out if self.co_purchases is None else {**out, "co_purchases": self.co_purchases}


def co_purchased(model: BehaviourModel | None, row: int, settings: BoughtTogetherConfig,
                 allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(product rows bought with `row`, their scores, their basket counts), best first; the product itself,
    pairs below `min_shoppers` and rows not `allowed` left out."""
    counts = None if model is None else model.co_purchase
    none = np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    if counts is None or row >= counts.n_products:
        return none
    rows, together, shoppers = counts.pair_row(row)
    keep = (rows != row) & (together > 0) & (shoppers >= settings.min_shoppers)
    if allowed is not None:
        keep &= allowed[rows]
    rows, together = rows[keep], together[keep]
    own = counts.product_baskets()
    scores = together if settings.scoring == "count" else together / np.sqrt(np.maximum(own[row] * own[rows], 1.0))
    order = np.lexsort((rows, -own[rows], -scores))
    return rows[order], scores[order], together[order]


def _needed(rows: np.ndarray, k: int, group_ids: np.ndarray | None, own_group: int | None) -> int:
    """How many of the ranked rows fill k hits: k, or on a grouped index up to the k-th new group."""
    if group_ids is None:
        return k
    seen: set[int] = set()
    for position, group in enumerate(group_ids[rows].tolist()):
        if group != own_group and group not in seen:
            seen.add(group)
            if len(seen) == k:
                return position + 1
    return len(rows)


def fallback_space(session: SearchSession, row: int) -> str | None:
    """The space the fill comes from: fused once trained, else image, else text; the first where the product
    has a vector (None: none)."""
    for space in ("fused", "image", "text"):
        vectors = session.directory.spaces.get(space)
        if space in session.manifest.spaces and vectors is not None and vectors.vector_of_row(row) is not None:
            return space
    return None


def bought_together(session: SearchSession, model: BehaviourModel | None, product_id: str, k: int = 10,
                    settings: BoughtTogetherConfig = BoughtTogetherConfig(), *, where: Mapping[str, Any] | None = None,
                    price: PriceRange | None = None) -> list[BoughtTogetherHit]:
    """Up to k products bought with `product_id`, best first, filled with similar products (see the module).

    model: the index's behaviour model (None: no events yet, so every hit is similar). Raises
    IndexStoreError for an id the index does not hold, QueryError for a bad filter or k.
    """
    check_k(k)
    row = session.products.row_of(str(product_id))
    allowed = session.allowed_rows(where=where, price=price)
    rows, scores, counts = co_purchased(model, row, settings, allowed)
    groups = session.groups
    n = _needed(rows, k, None if groups is None else groups.ids, None if groups is None else int(groups.ids[row]))
    rows, scores, counts = rows[:n], scores[:n], counts[:n]  # metadata only for the rows shown
    hits = [BoughtTogetherHit(session.products.ids[r], float(s), session.products.metadata(r), source=CO_PURCHASE,
                              co_purchases=int(c))
            for r, s, c in zip(rows.tolist(), scores.tolist(), counts.tolist())]
    if groups is not None:  # one hit per product group, its own group left out
        from vitrina.engine.query.variants import _ranked_groups, _with_variants

        hits = _with_variants(session, _ranked_groups(session, hits, skip_group=int(groups.ids[row])), allowed)
    hits = hits[:k]
    space = fallback_space(session, row) if settings.fill and len(hits) < k else None
    if space is not None:
        shown = {h.id for h in hits} | {v for h in hits for v in (h.variants or [])}
        similar = session.similar_to_product(str(product_id), min(k + len(hits), 10_000), space, where=where, price=price)
        for hit in similar:
            if len(hits) >= k:
                break
            if hit.id not in shown:
                hits.append(BoughtTogetherHit(hit.id, hit.score, hit.metadata, hit.variants, hit.matched_image,
                                              hit.matched_image_index, hit.multi_image, source=SIMILAR))
    return hits

