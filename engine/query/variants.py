"""One hit per product group: search, similar and recommend on an index built with a group field or
`--collapse-duplicates` (engine.build.groups) show each group once, by its best member, with the others
listed as `variants`.

- The best member of a group is its first product in the answer's own order: the best scoring by
  relevance (personalised too), the first by price for a price sort, the most alike for `similar`.
- `SearchHit.variants` (JSON `"variants"`) lists the ids of the group's other products, best first: those
  among the first 100 rows retrieved in the answer's order, then the rest by catalog row; only products
  the filters allow, at most `MAX_VARIANTS` (100). (The first 100 rows are read for every page, so variants
  are listed alike on all.) On
  an index without groups it is None and left out of the JSON, so answers are as before.
- Retrieval goes deep enough to fill the page with groups: the rows are retrieved 100 deep (`DEPTHS`),
  then 400, 1,600, ... deep while fewer groups than offset + k came back and more rows were there; each
  deeper retrieval only appends the rows not seen yet, so a query's ranking is one list however deep a
  page reads it: pages (`offset` and `k` count groups) concatenate to the unpaged list, and the first
  100 rows rank as in the ungrouped search. 100 rows held at least 39 groups for every H&M query of
  benchmarks/variants.py.
- `similar` by id leaves out the product's own group (its other colours, its duplicates): they are its
  variants, not products like it.
- With facets or a price sort, `total` counts the groups of the matched set; facet counts still count
  products (each colour has its own colour value).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from vitrina.engine.query.hits import MAX_K, Hits, SearchHit

if TYPE_CHECKING:
    from vitrina.engine.query.compose import TextSearch
    from vitrina.engine.query.search import SearchSession
    from vitrina.index import IndexDirectory

DEPTHS = (100, 400, 1_600, 6_400, MAX_K)  # retrieval depths tried in turn until the page fills with groups
MAX_VARIANTS = 100  # variants listed per hit, best first (a group field as coarse as a category stays answerable)
Fetch = Callable[[int, list[int]], list[list[SearchHit]]]  # (depth, query numbers) -> each query's hits


@dataclass(frozen=True)
class ProductGroups:
    """The group id of every product row, and each group's rows."""

    ids: np.ndarray  # group id per product row

    @cached_property
    def _members(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.ids, kind="stable")
        starts = np.searchsorted(self.ids[order], np.arange(int(self.ids.max(initial=-1)) + 2))
        return order, starts

    def members(self, group: int) -> np.ndarray:
        """The product rows of one group, in catalog order."""
        order, starts = self._members
        return order[starts[group]:starts[group + 1]]

    def count(self, rows: np.ndarray) -> int:
        """How many groups these product rows belong to."""
        return len(np.unique(self.ids[np.asarray(rows, dtype=np.int64)]))


def load_groups(directory: IndexDirectory) -> ProductGroups | None:
    """The groups of an index directory: its stored ids, computed again where a grouped index lacks the file
    (a version rewritten by a tool that did not keep it); None for an index built without grouping."""
    if directory.groups is None:
        if not directory.manifest.catalog.get("groups"):
            return None
        from vitrina.engine.build.groups import attach_groups

        attach_groups(directory)
    return ProductGroups(np.asarray(directory.groups, dtype=np.int64))


def group_count(session: SearchSession, rows: np.ndarray) -> int:
    """The size of a matched set: its groups on a grouped index, else its products."""
    groups = session.groups
    return len(rows) if groups is None else groups.count(rows)


# --- collapsing ranked hits --------------------------------------------------------------------------------------

@dataclass
class _Shown:
    hit: SearchHit  # the group's best member
    group: int
    ranked: list[int]  # the group's rows in the answer's order, the best member first


def _ranked_groups(session: SearchSession, hits: Sequence[SearchHit], skip_group: int | None = None,
                   ranked_within: int | None = None) -> list[_Shown]:
    """The groups of ranked hits in order of their best member (hits of `skip_group` left out). Other members
    count as ranked only among the first `ranked_within` hits (the first retrieval depth, which every page
    reads, so a group's variants are in the same order on every page); later ones go with the unretrieved."""
    groups, rows_by_id = session.groups, session.products.rows_by_id
    limit = len(hits) if ranked_within is None else ranked_within
    shown: dict[int, _Shown] = {}
    for position, hit in enumerate(hits):
        row = rows_by_id[hit.id]
        group = int(groups.ids[row])
        if group == skip_group:
            continue
        if group not in shown:
            shown[group] = _Shown(hit, group, [row])
        elif position < limit:
            shown[group].ranked.append(row)
    return list(shown.values())


def _with_variants(session: SearchSession, shown: Sequence[_Shown], allowed: np.ndarray | None) -> list[SearchHit]:
    """Each shown group's best member with `variants`: the other members, retrieved ones first in the answer's
    order, then the rest by row; only rows `allowed`."""
    ids = session.products.ids
    out = []
    for item in shown:
        listed = set(item.ranked)
        rest = [int(r) for r in session.groups.members(item.group) if int(r) not in listed]
        if allowed is not None:
            rest = [r for r in rest if allowed[r]]
        listed_rows = (item.ranked[1:] + rest)[:MAX_VARIANTS]
        out.append(dataclasses.replace(item.hit, variants=[ids[r] for r in listed_rows]))
    return out


def collapsed(session: SearchSession, hits: Sequence[SearchHit], k: int, offset: int = 0,
              allowed: np.ndarray | None = None) -> list[SearchHit]:
    """One page (offset, k in groups) of ranked hits, one per group, with their variants."""
    return _with_variants(session, _ranked_groups(session, hits)[offset:offset + k], allowed)


def widened(session: SearchSession, fetch: Fetch, queries: int, need: int,
            skip_groups: Sequence[int | None] | None = None) -> list[list[_Shown]]:
    """Each query's ranked groups, at least `need` of them where there are that many: the hits retrieved at
    DEPTHS[0], extended by the new hits of each deeper retrieval in turn while too few groups came back.

    Each deeper retrieval only appends (the rows before keep their places), so a query's ranking is one
    fixed list however deep a page needs it: pages concatenate, and the first rows are those of the
    ungrouped search (in hybrid mode a deeper candidate list would otherwise re-scale the blend)."""
    answers: list[list[_Shown]] = [[] for _ in range(queries)]
    ranked: list[list[SearchHit]] = [[] for _ in range(queries)]
    first = [0] * queries  # hits of the first depth
    pending = list(range(queries))
    for depth in DEPTHS:
        still = []
        for i, hits in zip(pending, fetch(depth, pending)):
            known = {hit.id for hit in ranked[i]}
            ranked[i] += [hit for hit in hits if hit.id not in known]
            first[i] = first[i] or len(ranked[i])
            answers[i] = _ranked_groups(session, ranked[i], None if skip_groups is None else skip_groups[i], first[i])
            if len(answers[i]) < need and len(hits) >= depth and depth < MAX_K:
                still.append(i)
        pending = still
        if not pending:
            break
    return answers


# --- the hooks of search, similar and recommend --------------------------------------------------------------

def grouped_text_answers(
    session: SearchSession, search: TextSearch, matched: list[tuple[np.ndarray, np.ndarray]] | None,
    query_vectors: np.ndarray | None, relevance: Callable[[TextSearch, np.ndarray | None], list[Hits]],
    by_price: Callable[[np.ndarray, np.ndarray, TextSearch], list[SearchHit]],
) -> list[Hits]:
    """A text search's answers, one hit per group: `relevance(search, vectors)` ranks hits as the ungrouped
    search does (asked deeper, for some of the queries), `by_price(scores, rows, search)` orders a matched set."""
    if search.by_price:
        answers = []
        for scores, rows in matched:
            ordered = by_price(scores, rows, dataclasses.replace(search, k=len(rows), offset=0))
            answers.append(Hits(collapsed(session, ordered, search.k, search.offset, search.allowed)))
        return answers
    personalised: dict[int, bool | None] = {}
    if query_vectors is None and search.needs_vectors:  # encoded once, whatever depth each query needs
        query_vectors = session.encode_queries(search.dense_queries or search.queries, search.space)

    def fetch(depth: int, pending: list[int]) -> list[list[SearchHit]]:
        part = dataclasses.replace(
            search, k=depth, offset=0, queries=tuple(search.queries[i] for i in pending),
            dense_queries=tuple(search.dense_queries[i] for i in pending) if search.dense_queries else ())
        vectors = None if query_vectors is None else query_vectors[pending]
        got = relevance(part, vectors)
        personalised.update({i: hits.personalised for i, hits in zip(pending, got)})
        return got

    need = search.offset + search.k
    shown = widened(session, fetch, len(search.queries), need)
    return [Hits(_with_variants(session, groups[search.offset:need], search.allowed), personalised.get(i))
            for i, groups in enumerate(shown)]


def grouped_vector_hits(session: SearchSession, space: str, vectors: np.ndarray, k: int,
                        allowed: np.ndarray | None) -> list[list[SearchHit]]:
    """Similar to query vectors (image search), one hit per group."""
    fetch = lambda depth, pending: session.search_vectors(space, vectors[pending], depth, allowed)  # noqa: E731
    return [_with_variants(session, groups[:k], allowed) for groups in widened(session, fetch, len(vectors), k)]


def grouped_similar(session: SearchSession, vectors, queries: np.ndarray, row: int, k: int,
                    allowed: np.ndarray | None) -> list[SearchHit]:
    """Products like the product at `row` (its own group left out), one hit per group; `queries`: its vector,
    or one per image (a candidate scores its best pair)."""
    def fetch(depth: int, pending: list[int]) -> list[list[SearchHit]]:
        scores, rows = vectors.search_pooled(np.atleast_2d(queries), min(depth + 1, MAX_K + 1), allowed)
        return [session.hits(scores[0], rows[0], exclude=row, k=depth)]

    own = int(session.groups.ids[row])
    return _with_variants(session, widened(session, fetch, 1, k, [own])[0][:k], allowed)


def grouped_top(session: SearchSession, scores: np.ndarray, rows: np.ndarray, k: int,
                keep: np.ndarray | None = None) -> list[SearchHit]:
    """The best k groups of scored product rows (recommendations; `keep`: a mask of the rows that may be
    shown), ties by row."""
    if keep is not None:
        scores, rows = scores[keep], rows[keep]
    order = np.lexsort((rows, -scores))
    fetch = lambda depth, pending: [session.hits(scores[order[:depth]], rows[order[:depth]])]  # noqa: E731
    return _with_variants(session, widened(session, fetch, 1, k)[0][:k], None)
