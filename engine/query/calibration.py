"""Scores that mean the same across queries, and the relevance floor below which a query gets no results.

Hybrid search ranks by a blend whose parts are min-max scaled per query (index.hybrid), so its raw score
says how a product compares with the other candidates of the same query, never how relevant it is: a
gibberish query's top hit scored 1.0. The ranking is kept as it is (its nDCG is unchanged); what changes is
the `score` each hit reports, and whether a query answers at all.

Calibrated relevance of a hit (hybrid mode), in [0, 1]:
    lexical = the share of the query's words the product holds (typos corrected; `LexicalIndex.coverage_of`)
    dense   = 1 / (1 + exp(-(similarity - floor) / scale)), scale = (high - floor) / ln 9: 0.5 at the
              catalog's floor, 0.9 at `high` (engine.build.calibrate measures both on the catalog)
    relevance = (lexical + dense) / 2
Both parts depend only on the query and the product, so a score means the same in every query. Down the
ranking, a hit reports the lowest relevance of itself and the hits above it, so scores never rise down a
list and a page's scores do not depend on its size.

The floor (hybrid mode): a query gets no results when no product holds at least half of its words
(COVERAGE_FLOOR, typos corrected) and its best dense similarity is below the catalog's floor, both over the
whole catalog: the floor judges the query, and filters then narrow the answer of a query that passes (a
sensible query inside a filter with no good match still lists the filter's closest products, as before).
Its answer is then empty, with `suggestions`: catalog words close to the query's words.
The matched set that facets count and price sorts order keeps only the dense candidates at or above the
floor (and is empty for a query below it).

Lexical mode needs no floor: a query sharing no word with the catalog already gets nothing. Dense mode and
image search have no floor: on Home Depot, the best dense similarity alone is below the floor for all 200
random strings but also for 9.2% of the dev queries (benchmarks/empty_results.py), far above the 2% a floor
may cost, so they keep their raw cosine similarity as `score` and always answer. Lexical, price-sorted and
personalised scores are as before (BM25, the matched set's blend, the personal blend); the floor applies to
price sorts and personalised searches too.
"""

from __future__ import annotations

import logging
import math
import re
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from vitrina.engine.build.calibrate import SpaceCalibration, calibrate_space, read_calibration
from vitrina.engine.query.exact import has_exact_match
from vitrina.engine.query.hits import Hits

if TYPE_CHECKING:
    from vitrina.engine.query.compose import TextSearch
    from vitrina.engine.query.search import SearchSession

COVERAGE_FLOOR = 0.5  # a product holding this share of the query's words lets the query answer
SUGGESTIONS = 5
log = logging.getLogger("vitrina")
_CALIBRATIONS: "weakref.WeakKeyDictionary[SearchSession, dict[str, SpaceCalibration | None]]" = weakref.WeakKeyDictionary()
_WORD = re.compile(r"[^\W\d_]+")


def calibration_of(session: SearchSession, space: str) -> SpaceCalibration | None:
    """The calibration of text queries in `space`: stored with the index, else measured now (once per
    session) when it is missing or was made for another encoder or catalog size."""
    known = _CALIBRATIONS.setdefault(session, {})
    if space not in known:
        stored = read_calibration(session.path).get(space)
        target = session._text_target(space)[1]
        info = session.manifest.spaces.get(target)
        if stored is not None and info is not None and (stored.encoder, stored.products) == (info.encoder, len(session.products)):
            known[space] = stored
        else:
            log.info("calibrating the %s space of %s on its catalog (not stored with the index)", space, session.path)
            known[space] = calibrate_space(session, space)
    return known[space]


def dense_relevance(similarity: np.ndarray, calibration: SpaceCalibration) -> np.ndarray:
    """Similarities mapped to [0, 1]: 0.5 at the floor, 0.9 at the calibration's `high`."""
    scale = (calibration.high - calibration.floor) / math.log(9.0)
    z = (np.asarray(similarity, dtype=np.float64) - calibration.floor) / scale
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))


@dataclass
class Floor:
    """The floor of one hybrid search: which queries are below it, and the calibrated score of each hit."""

    session: SearchSession
    search: TextSearch
    calibration: SpaceCalibration
    query_vectors: np.ndarray
    answered: dict[int, bool] = field(default_factory=dict)  # query -> a ranked hit is at or above the floor
    _below: list[bool] | None = None

    @property
    def dense_floor(self) -> float:
        return self.calibration.floor

    @property
    def below(self) -> list[bool]:
        """Whether each query is below the floor: no product holds half its words and its best similarity is
        below the floor. A query whose ranked hits already hold one such product (`scores`) costs nothing more;
        the others take one top-1 vector search and, below the floor, a count of their words."""
        if self._below is None:
            session, search = self.session, self.search
            unsure = [i for i in range(len(search.queries))  # a product code the catalog holds is an answer
                      if not self.answered.get(i, False) and not has_exact_match(session, search.queries[i])]
            below = [False] * len(search.queries)
            if unsure:
                best, rows = self._vectors.search(self.query_vectors[unsure], 1)  # the whole catalog: filters
                best = np.where(rows[:, 0] >= 0, best[:, 0], -np.inf)           # never make a query fail
                for i, b in zip(unsure, best):
                    below[i] = bool(b < self.calibration.floor) and best_coverage(session, search.queries[i]) < COVERAGE_FLOOR
            self._below = below
        return self._below

    @property
    def _vectors(self):
        return self.session.directory.spaces[self.session._text_target(self.search.space)[1]]

    def scores(self, scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Calibrated scores of each query's ranked rows (padding rows keep their score)."""
        lexical = self.session.directory.lexical
        out = np.array(scores, dtype=np.float32, copy=True)
        for i, (query, ranked) in enumerate(zip(self.search.queries, rows)):
            valid = ranked >= 0
            if not valid.any():
                continue
            found = ranked[valid]
            coverage = lexical.coverage_of(query, found)
            similarity = self._vectors.scores_of(self.query_vectors[i], found)
            self.answered[i] = bool((coverage >= COVERAGE_FLOOR).any() or (similarity >= self.calibration.floor).any())
            relevance = (coverage + dense_relevance(similarity, self.calibration)) / 2.0
            out[i, valid] = np.minimum.accumulate(relevance)
        return out

    def matched(self, matched: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """The matched sets with the queries below the floor emptied."""
        return [(s[:0], r[:0]) if below else (s, r) for (s, r), below in zip(matched, self.below)]

    def apply(self, answers: list[Hits]) -> None:
        """Empty the answers of the queries below the floor, and give them suggestions."""
        for answer, query, below in zip(answers, self.search.queries, self.below):
            if below:
                del answer[:]
                answer.suggestions = suggestions(self.session, query)
                if answer.facets is not None:
                    answer.facets = {column: {} for column in answer.facets}
                    answer.price_range = None
                if answer.total is not None:
                    answer.total = 0


def plan_floor(session: SearchSession, search: TextSearch, query_vectors: np.ndarray | None) -> Floor | None:
    """The floor of a hybrid search (its queries encoded here when not given), else None (lexical and dense
    modes, or a catalog that cannot be calibrated)."""
    if search.mode != "hybrid":
        return None
    calibration = calibration_of(session, search.space)
    if calibration is None:
        return None
    if query_vectors is None:
        query_vectors = session.encode_queries(search.dense_queries or search.queries, search.space)
    return Floor(session, search, calibration, query_vectors)


def best_coverage(session: SearchSession, query: str, allowed: np.ndarray | None = None) -> float:
    """The largest share of the query's words that one product inside `allowed` holds (typos corrected)."""
    lexical = session.directory.lexical
    rows = np.arange(lexical.count) if allowed is None else np.flatnonzero(allowed)
    return float(lexical.coverage_of(query, rows).max()) if len(rows) else 0.0


def suggestions(session: SearchSession, query: str, limit: int = SUGGESTIONS) -> list[str]:
    """Catalog words close to the query's words (SymSpell, up to 2 edits, closest then most frequent), else the
    catalog's most frequent words; [] for an index without a vocabulary."""
    lexical = session.directory.lexical
    vocabulary = None if lexical is None else lexical.vocabulary
    if vocabulary is None:
        return []
    from vitrina.index.lexical import fold

    found: list[tuple[int, int, str]] = []
    for word in dict.fromkeys(_WORD.findall(fold(query))):
        if len(word) >= 3:
            found += [(distance, -count, term) for distance, count, term in vocabulary.near(word, 2) if len(term) >= 3]
    words = [term for _, _, term in sorted(found)]
    return list(dict.fromkeys(words))[:limit] or popular_words(session, limit)


def popular_words(session: SearchSession, limit: int = SUGGESTIONS) -> list[str]:
    """The catalog's most frequent words of 4+ letters that are not stopwords."""
    lexical = session.directory.lexical
    return lexical.vocabulary.most_frequent(limit, min_length=4, skip=lexical.analyzer.stopwords)


def queries_below(session: SearchSession, queries: Sequence[str], space: str = "text") -> list[bool]:
    """Whether each query (unfiltered, hybrid) is below the floor: what benchmarks/empty_results.py counts."""
    from vitrina.engine.query.compose import plan_text_search

    search = plan_text_search(session, list(queries), 1, space, "hybrid")
    floor = plan_floor(session, search, None)
    return [False] * len(queries) if floor is None else floor.below
