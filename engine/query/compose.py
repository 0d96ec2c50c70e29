"""The one search composition behind Python, the CLI and HTTP: plan, then run.

A text search is planned (queries cleaned, the space and mode defaulted, the filter made a mask of
allowed rows) and run (retrieve with the hybrid blend, personalise for a user, group the hits per
query). The server plans, encodes the queries in a micro-batch, then runs with those vectors and its
live behaviour model; `SearchSession.search` and `personalised_search` do both steps in one call. An
image search is the same two steps (`plan_image_search`, `run_image_search`).

Facets, sorting and paging (text search): `facets` names catalog columns whose value counts, with the
price range, are computed over the *matched set* (`SearchSession.matched`): every product inside the
filters that shares a word with the query (all lexical matches) plus the dense candidates retrieved at
the hybrid candidate depth (`HybridConfig.candidates`, 100 by default) whose similarity reaches the
catalog's relevance floor (hybrid searches; engine.query.calibration). Counts are numpy bincounts over
`FilterColumns` column codes.

Relevance floor and calibrated scores (hybrid mode, engine.query.calibration): a query of which no product
holds half the words and whose best dense similarity is below the catalog's floor gets no results, with
`suggestions` (its matched set is empty too); the other queries keep today's ranking, and each hit's score
is a calibrated relevance in [0, 1] that means the same across queries.

`sort="relevance"` (the default) keeps the usual ranking; `price_asc` / `price_desc` order the matched
set by price (products without one last; equal prices in relevance order, then by row), so a price sort
pages through the same set the facets count. `offset` skips that many hits (paging: `offset` + `k` at
most MAX_K). Equal scores rank by row. Pages of one query concatenate to the unpaged list for price
sorts and lexical relevance; for the hybrid and dense relevance rankings, as long as `offset + k` stays
within the candidate depth (the dense side always retrieves at least that deep; beyond it, deeper
candidate lists can re-order the blend or a vector index's approximate top-k).

The stages of a relevance-sorted text search, in order: retrieve (typos corrected and synonyms expanded
inside the lexical leg; the dense leg reads the corrected, rewritten query), calibrate the hybrid scores,
put exact product codes first (engine.query.exact), personalise, apply the merchandising rules that fire
(hide, boost/bury, pin: engine.query.rules), collapse product groups to one hit each (engine.query.variants),
page, and finally empty the answers of queries below the relevance floor (a product code the catalog holds
is never below it). A price sort orders the matched set without the hidden products, then groups and pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from PIL import Image

from vitrina.engine.query.calibration import Floor, plan_floor
from vitrina.engine.query.exact import exact_first
from vitrina.engine.query.filters import PriceRange
from vitrina.engine.errors import QueryError
from vitrina.engine.query.hits import MAX_K, Hits, SearchHit, clean_query
from vitrina.engine.query.personalise import PERSONAL_DEPTH, PERSONAL_WEIGHT, personalise
from vitrina.engine.query.rules.apply import fired_rules, merchandise, rules_depth, without_hidden
from vitrina.engine.query.variants import group_count, grouped_text_answers, grouped_vector_hits
from vitrina.index.filters import ProductFilter

if TYPE_CHECKING:
    from vitrina.engine.learn.behaviour import BehaviourModel
    from vitrina.engine.query.search import DenseCandidates, SearchSession


SORTS = ("relevance", "price_asc", "price_desc")
MAX_FACETS = 20  # columns one search may ask facet counts of
FACET_VALUES = 100  # values listed per facet column, most frequent first


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
    facets: tuple[str, ...] | None = None  # columns to count over the matched set; None: no facets asked
    sort: str = "relevance"
    offset: int = 0

    @property
    def by_price(self) -> bool:
        return self.sort != "relevance"

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
    facets: Sequence[str] | None = None, sort: str = "relevance", offset: int = 0,
) -> TextSearch:
    """Clean the queries (one text is one query), default the space and mode, mask the filtered rows, and
    check the facets, sort and offset (a QueryError names an unknown column or sort, or a page past MAX_K)."""
    cleaned = tuple(clean_query(q) for q in ([queries] if isinstance(queries, str) else queries))
    space = space or session.default_space()
    mode = mode or session.default_mode(space)
    allowed = session.allowed_rows(product_filter, where=where, price=price)
    dense = tuple(session.dense_text(q, mode) for q in cleaned)
    columns = check_facets(session, facets)
    sort = check_sort(session, sort, user)
    offset = check_offset(offset, k)
    return TextSearch(cleaned, k, space, mode, allowed, None if user is None else str(user), dense, columns, sort,
                      offset)


def check_facets(session: SearchSession, facets: Sequence[str] | None) -> tuple[str, ...] | None:
    """The facet columns, each one the catalog has (None: no facets asked; a text is one column, or several
    separated by commas: "category,brand")."""
    if facets is None:
        return None
    columns = [facets] if isinstance(facets, str) else list(facets)
    columns = [part.strip() if isinstance(part, str) else part
               for column in columns for part in _facet_names(session, column)]
    if len(columns) > MAX_FACETS:
        raise QueryError(f"facets names {len(columns)} columns; give at most {MAX_FACETS}")
    for column in columns:
        if not isinstance(column, str) or not column:
            raise QueryError(f"facets: {str(column)[:40]!r} is not a column name")
        if column not in session.filters.available:
            raise QueryError(f"this catalog has no column {column[:60]!r} to count in facets "
                             f"(columns: {', '.join(session.filters.available)})")
    return tuple(dict.fromkeys(columns))


def _facet_names(session: SearchSession, column: Any) -> list[Any]:
    """One facets item as column names: "category,brand" is two, unless the catalog has a column of that name."""
    if isinstance(column, str) and "," in column and column not in session.filters.available:
        return column.split(",")
    return [column]


def check_sort(session: SearchSession, sort: str, user: str | None) -> str:
    if sort not in SORTS:
        raise QueryError(f"unknown sort {str(sort)[:40]!r}; choose one of {', '.join(SORTS)}")
    if sort != "relevance":
        if session.filters.columns["price"] is None:
            raise QueryError(f"sort {sort} needs a price column, and this catalog has none")
        if user is not None:
            raise QueryError(f"sort {sort} orders by price, so it cannot personalise for a shopper; "
                             "sort by relevance or leave out the user")
    return sort


def check_offset(offset: int, k: int) -> int:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise QueryError(f"offset must be a whole number >= 0, got {str(offset)[:40]!r}")
    if offset and offset + k > MAX_K:  # k itself is checked where it is read
        raise QueryError(f"offset + k must be at most {MAX_K}, got {offset} + {k}")
    return offset


def run_text_search(
    session: SearchSession, search: TextSearch, query_vectors: np.ndarray | None = None,
    behaviour: BehaviourModel | None = None, weight: float = PERSONAL_WEIGHT, dense: DenseCandidates | None = None,
) -> list[Hits]:
    """Retrieve (lexical, dense or the hybrid blend, inside the mask), personalise, and group per query: one
    Hits per query, saying whether it was personalised (None: the search named no shopper) and, where the
    lexical leg corrected typos, the corrected query.

    query_vectors: the queries already encoded for `search.space` (else they are encoded here).
    behaviour: the model that personalises for `search.user`; without one, answers are not personalised.
    dense: the dense leg already searched for these queries (`SearchSession.dense_candidates`), used where
    it is the search the ranking needs.
    """
    fired = fired_rules(session, search)  # each query's merchandising rules (engine.query.rules)
    floor = plan_floor(session, search, query_vectors)  # hybrid: calibrated scores and the relevance floor
    query_vectors = query_vectors if floor is None else floor.query_vectors
    matched = None
    if search.facets is not None or search.by_price:
        if query_vectors is None and search.needs_vectors:  # encoded once for both retrievals
            query_vectors = session.encode_queries(search.dense_queries or search.queries, search.space)
        matched = session.matched(search.queries, search.space, search.mode, query_vectors, search.allowed,
                                  dense_floor=None if floor is None else floor.dense_floor)
        matched = matched if floor is None else floor.matched(matched)
        matched = [without_hidden(session, s, r, f) for (s, r), f in zip(matched, fired)]
    if session.groups is not None:  # one hit per product group (engine.query.variants), after the rules act
        answers = grouped_text_answers(
            session, search, matched, query_vectors,
            lambda part, vectors: _by_relevance(session, part, vectors, behaviour, weight, fired_rules(session, part),
                                                plan_floor(session, part, vectors)),
            lambda s, r, part: _by_price(session, s, r, part))
    elif search.by_price:
        answers = [Hits(_by_price(session, s, r, search)) for s, r in matched]
    else:
        answers = _by_relevance(session, search, query_vectors, behaviour, weight, fired, floor, dense)
    if matched is not None and search.facets is not None:
        for answer, (_, rows) in zip(answers, matched):
            answer.facets = {c: session.filters.facet_counts(c, rows, FACET_VALUES) for c in search.facets}
            answer.price_range = session.filters.price_range_of(rows)
    if matched is not None:
        for answer, (_, rows) in zip(answers, matched):
            answer.total = group_count(session, rows)
    for answer, query, rules in zip(answers, search.queries, fired):
        answer.corrected_query = session.corrected_query(query, search.mode)
        answer.rules_fired = [rule.id for rule in rules]
    if floor is not None:
        floor.apply(answers)
    return answers


def _by_relevance(session: SearchSession, search: TextSearch, query_vectors: np.ndarray | None,
                  behaviour: BehaviourModel | None, weight: float, fired: list,
                  floor: Floor | None = None, dense: DenseCandidates | None = None) -> list[Hits]:
    personal = search.user is not None and behaviour is not None
    end = search.offset + search.k
    ranked = max(rules_depth(end, rules) for rules in fired)  # end, unless rules hide, boost or bury
    depth = max(ranked, PERSONAL_DEPTH) if personal else ranked
    scores, rows = session.retrieve(search.queries, depth, search.space, search.mode, query_vectors, search.allowed, dense)
    if floor is not None and not personal:
        scores = floor.scores(scores, rows)  # calibrated (engine.query.calibration)
    scores, rows = exact_first(session, search.queries, scores, rows, search.allowed)
    if personal:
        answers = [personalise(session, behaviour, s, r, search.user, ranked, weight) for s, r in zip(scores, rows)]
    else:
        personalised = None if search.user is None else False
        answers = [(session.hits(s, r, k=ranked), personalised) for s, r in zip(scores, rows)]
    return [Hits(merchandise(session, hits, rules, search.allowed)[search.offset:end], personalised)
            for (hits, personalised), rules in zip(answers, fired)]


def _by_price(session: SearchSession, scores: np.ndarray, rows: np.ndarray, search: TextSearch) -> list[SearchHit]:
    """One page of the matched set ordered by price (unknown prices last; ties in relevance order)."""
    prices = session.filters.prices_of(rows)
    key = prices if search.sort == "price_asc" else -prices
    key = np.where(np.isnan(key), np.inf, key)
    order = np.lexsort((np.arange(len(rows)), key))[search.offset:search.offset + search.k]
    return session.hits(scores[order], rows[order])


def dense_depth(session: SearchSession, search: TextSearch) -> int | None:
    """How deep `run_text_search` searches the dense leg of a one-query relevance search, when a server can
    search it ahead in a batch (`SearchSession.dense_candidates`); None where it cannot (no dense leg, a filter,
    a price sort or facets, product groups, a shopper)."""
    if (search.mode == "lexical" or search.allowed is not None or search.by_price or search.facets is not None
            or session.groups is not None or search.user is not None or len(search.queries) != 1):
        return None
    return max(search.offset + search.k, session.config.hybrid.candidates)


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
    space = session.similar_space(search.space)  # fused: with attribute terms where trained with them
    if session.groups is not None:  # one hit per product group
        return grouped_vector_hits(session, space, query_vectors, search.k, search.allowed)
    return session.search_vectors(space, query_vectors, search.k, search.allowed)
