"""The one search composition behind Python, the CLI and HTTP: plan, then run.

A text search is planned (queries cleaned, the space and mode defaulted, the filter made a mask of
allowed rows) and run (retrieve with the hybrid blend, personalise for a user, group the hits per
query). The server plans, encodes the queries in a micro-batch, then runs with those vectors and its
live behaviour model; `SearchSession.search` and `personalised_search` do both steps in one call. An
image search is the same two steps (`plan_image_search`, `run_image_search`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from PIL import Image

from vitrina.engine.learn.behaviour import BehaviourModel
from vitrina.engine.query.filters import PriceRange
from vitrina.engine.query.hits import Hits, SearchHit, clean_query
from vitrina.engine.query.personalise import PERSONAL_DEPTH, PERSONAL_WEIGHT, personalise
from vitrina.index.filters import ProductFilter

if TYPE_CHECKING:
    from vitrina.engine.query.search import SearchSession


@dataclass(frozen=True)
class TextSearch:
    """A text search ready to run: cleaned queries, its space and mode, the rows it may return, its shopper."""

    queries: tuple[str, ...]
    k: int
    space: str
    mode: str
    allowed: np.ndarray | None = None  # boolean mask over product rows; None: every row
    user: str | None = None

    dense_queries: tuple[str, ...] = ()  # what the dense leg encodes (`SearchSession.dense_text`); () : `queries`

    @property
    def needs_vectors(self) -> bool:
        """Whether the dense side runs, so the queries need encoding (`dense_queries`)."""
        return self.mode != "lexical"


@dataclass(frozen=True)
class ImageSearch:
    """An image search ready to run: its space and the rows it may return."""

    k: int
    space: str
    allowed: np.ndarray | None = None


def plan_text_search(
    session: SearchSession, queries: str | Sequence[str], k: int = 10, space: str | None = None,
    mode: str | None = None, *, where: Mapping[str, Any] | None = None, price: PriceRange | None = None,
    product_filter: ProductFilter | None = None, user: str | None = None,
) -> TextSearch:
    """Clean the queries (one text is one query), default the space and mode, and mask the filtered rows."""
    cleaned = tuple(clean_query(q) for q in ([queries] if isinstance(queries, str) else queries))
    space = space or session.default_space()
    mode = mode or session.default_mode(space)
    allowed = session.allowed_rows(product_filter, where=where, price=price)
    dense = tuple(session.dense_text(q, mode) for q in cleaned) if mode == "hybrid" else cleaned
    return TextSearch(cleaned, k, space, mode, allowed, None if user is None else str(user), dense)


def run_text_search(
    session: SearchSession, search: TextSearch, query_vectors: np.ndarray | None = None,
    behaviour: BehaviourModel | None = None, weight: float = PERSONAL_WEIGHT,
) -> list[Hits]:
    """Retrieve (lexical, dense or the hybrid blend, inside the mask), personalise, and group per query: one
    Hits per query, saying whether it was personalised (None: the search named no shopper) and, where the
    lexical leg corrected typos, the corrected query.

    query_vectors: the queries already encoded for `search.space` (else they are encoded here).
    behaviour: the model that personalises for `search.user`; without one, answers are not personalised.
    """
    personal = search.user is not None and behaviour is not None
    depth = max(search.k, PERSONAL_DEPTH) if personal else search.k
    scores, rows = session.retrieve(search.queries, depth, search.space, search.mode, query_vectors, search.allowed)
    corrected = [session.corrected_query(q, search.mode) for q in search.queries]
    if personal:
        return [Hits(*personalise(session, behaviour, s, r, search.user, search.k, weight), corrected_query=c)
                for s, r, c in zip(scores, rows, corrected)]
    personalised = None if search.user is None else False
    return [Hits(session.hits(s, r, k=search.k), personalised, c) for s, r, c in zip(scores, rows, corrected)]


def plan_image_search(
    session: SearchSession, k: int = 10, space: str | None = None, *, where: Mapping[str, Any] | None = None,
    price: PriceRange | None = None, product_filter: ProductFilter | None = None,
) -> ImageSearch:
    """Default the space (fused once trained, else image) and mask the filtered rows."""
    space = space or session.default_image_space()
    return ImageSearch(k, space, session.allowed_rows(product_filter, where=where, price=price))


def run_image_search(
    session: SearchSession, search: ImageSearch, images: Sequence[Image.Image] = (),
    query_vectors: np.ndarray | None = None,
) -> list[list[SearchHit]]:
    """The hits of each query image (or of its vector, already encoded for `search.space`), inside the mask."""
    if query_vectors is None:
        query_vectors = session.encode_images(images, search.space)
    return session.search_vectors(search.space, query_vectors, search.k, search.allowed)
