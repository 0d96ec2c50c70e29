"""Issue 19 serving speed: BM25 rescoring and coverage give bm25s's own values, dense rescoring looks rows up
in one array, and the dense leg searched once for a micro-batch gives the rankings a per-request search gives
(packaged MiniLM over a small text catalog; no mocks)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from vitrina.engine.build.indexing import build_index
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.query.compose import dense_depth, plan_text_search
from vitrina.engine.query.search import SearchSession
from vitrina.index.lexical import LexicalIndex
from vitrina.index.product_index import ProductIndex
from vitrina.index.store import VectorSpace
from vitrina.serving.batching import MicroBatcher
from vitrina.serving.config import ServingConfig
from vitrina.serving.live import LiveIndex
from vitrina.serving.metrics import ServiceMetrics
from tests.helpers import demo_rows, write_csv
from tests.serving_util import ready_client

TEXTS = [
    "Milwaukee M18 cordless 1/2 in. drill driver", "DEWALT 18-Volt cordless compact drill", "36 in. x 80 in. white door",
    "5 gal. white interior paint", "red leather wallet", "blue denim jacket for men", "black running shoes",
    "white ceramic wall tile 12 in.", "cordless leaf blower 40-Volt", "brass door knob set", "red running shoes for women",
]
QUERIES = ["cordless drill", "white door 36\"", "red shoes", "drll cordles", "paint 5 gallon white", "knob", "zzz qqq"]


def reference_scores(lexical: LexicalIndex, query: str) -> np.ndarray | None:
    """BM25 of every product as bm25s computes it (no typos corrected, no synonyms): the reference."""
    ids = lexical._token_ids(query)
    return lexical.retriever.get_scores(ids) if ids else None


def test_bm25_rescoring_and_coverage_are_bm25s_values_exactly():
    lexical = LexicalIndex.build(TEXTS)
    lexical.correct_typos = False
    rows = np.array([10, 0, 3, 7, 1, 1, 5], dtype=np.int64)  # any order, repeats allowed
    for query in QUERIES:
        full = reference_scores(lexical, query)
        expected = np.zeros(len(rows), dtype=np.float32) if full is None else full[rows]
        assert np.array_equal(lexical.scores_of(query, rows), expected), query
        tokens = set(lexical.analyzer.tokens(query))
        vocab = lexical.retriever.vocab_dict
        held = [lexical.retriever.get_scores([vocab[t]])[rows] > 0 if t in vocab else np.zeros(len(rows), bool)
                for t in tokens]
        want = np.sum(held, axis=0) / len(tokens) if tokens else np.zeros(len(rows))
        assert np.array_equal(lexical.coverage_of(query, rows), want), query


def test_lexical_search_ranks_as_bm25s_scores_do():
    lexical = LexicalIndex.build(TEXTS)
    lexical.correct_typos = False
    scores, rows = lexical.search(QUERIES, 4)
    for query, got_scores, got_rows in zip(QUERIES, scores, rows):
        full = reference_scores(lexical, query)
        if full is None:
            assert (got_rows == -1).all()
            continue
        order = np.lexsort((np.arange(len(full)), -full))
        order = order[full[order] > 0][:4]
        assert got_rows[: len(order)].tolist() == order.tolist()
        assert np.array_equal(got_scores[: len(order)], full[order])


def test_vectors_of_rows_finds_rows_by_array_lookup_and_skips_unknown_ones():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = np.array([5, 2, 9], dtype=np.int64)
    space = VectorSpace(ProductIndex.build(vectors, rows, "Flat"), vectors, rows)
    found_vectors, found = space.vectors_of_rows(np.array([9, -1, 3, 100, 2]))
    assert found.tolist() == [True, False, False, False, True]
    assert np.array_equal(found_vectors, vectors[[2, 1]])
    scores = space.scores_of(vectors[0], np.array([5, 7]))
    assert scores[0] == pytest.approx(1.0, abs=1e-5) and np.isnan(scores[1])


@pytest.fixture(scope="module")
def text_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("speed")
    rows = [{"id": r["id"], "title": r["title"], "category": r["articleType"]} for r in demo_rows()[:120]]
    build_index(write_csv(root / "products.csv", rows), root / "idx", VitrinaConfig(progress=False))
    return root / "idx"


@pytest.mark.parametrize("mode", ["hybrid", "dense"])
def test_dense_candidates_searched_ahead_give_the_same_ranking(text_index, mode):
    session = SearchSession(text_index, VitrinaConfig(progress=False))
    queries = ["blue shirt", "black watch for men", "leather wallet"]
    vectors = session.encode_queries(queries)
    depth = session.config.hybrid.candidates
    ahead = session.dense_candidates(vectors, "text", depth)
    for i in range(len(queries)):
        one = type(ahead)("text", depth, ahead.scores[i:i + 1], ahead.rows[i:i + 1])
        want = session.retrieve(queries[i:i + 1], 10, mode=mode, query_vectors=vectors[i:i + 1])
        got = session.retrieve(queries[i:i + 1], 10, mode=mode, query_vectors=vectors[i:i + 1], dense=one)
        assert np.array_equal(want[1], got[1]) and np.allclose(want[0], got[0])
    # candidates of another depth, or a filtered search, are not used (the search runs as without them)
    wrong = type(ahead)("text", depth, ahead.scores[:1, ::-1].copy(), ahead.rows[:1, ::-1].copy())
    assert not wrong.fits("text", depth + 1, None) and not wrong.fits("text", depth, np.ones(3, bool))
    deeper = session.retrieve(queries[:1], depth + 1, mode=mode, query_vectors=vectors[:1], dense=wrong)
    assert np.array_equal(deeper[1], session.retrieve(queries[:1], depth + 1, mode=mode, query_vectors=vectors[:1])[1])


def test_dense_depth_only_for_plain_one_query_searches(text_index):
    session = SearchSession(text_index, VitrinaConfig(progress=False))
    assert dense_depth(session, plan_text_search(session, "shirt", 10)) == session.config.hybrid.candidates
    assert dense_depth(session, plan_text_search(session, "shirt", 100, offset=50)) == 150
    assert dense_depth(session, plan_text_search(session, "shirt", 10, mode="lexical")) is None
    assert dense_depth(session, plan_text_search(session, "shirt", 10, where={"category": "Shirts"})) is None
    assert dense_depth(session, plan_text_search(session, "shirt", 10, facets=["category"])) is None


@pytest.mark.parametrize("stage", [True, False])
def test_micro_batch_searches_the_dense_leg_once_for_the_queries_that_ask(text_index, stage):
    live = LiveIndex(text_index, VitrinaConfig(progress=False), ServingConfig(search_stage=stage), ServiceMetrics())
    try:
        items = [("blue shirt", "text", 100), ("red dress", "text", None), ("black watch", "text", 100)]
        encoded = live._encode_texts(items)
        assert all(e.dense is None for e in encoded) if stage else encoded[0].dense is not None
        encoded = live._search_dense(items, encoded) if stage else encoded
        assert encoded[1].dense is None
        vectors = live.session.encode_queries([text for text, _, _ in items])
        for i in (0, 2):
            assert encoded[i].dense is not None and encoded[i].dense.rows.shape == (1, 100)
            alone = live.session.dense_candidates(vectors[i:i + 1], "text", 100)
            assert encoded[i].dense.rows[0, :10].tolist() == alone.rows[0, :10].tolist()

        async def concurrent():
            return await asyncio.gather(*(live.text_query(q, "text", 100) for q in ("shirt", "dress", "watch")))

        for vector, dense in asyncio.run(concurrent()):
            assert dense is not None and dense.fits("text", 100, None) and vector.shape == (384,)
    finally:
        live.close()


def test_served_search_matches_the_library(text_index):
    client = ready_client(text_index)
    try:
        session = SearchSession(text_index, VitrinaConfig(progress=False))
        for query in ("blue shirt", "black watch for men", "wallet"):
            body = client.get("/search", params={"q": query, "k": 5}).json()
            assert [h["id"] for h in body["results"]] == [h.id for h in session.search(query, 5)[0]]
    finally:
        client.__exit__(None, None, None)


def test_the_search_stage_runs_beside_the_encoder_and_takes_every_waiting_batch_at_once():
    calls: list[list[int]] = []

    def then(items: list[int], results: list[int]) -> list[int]:
        calls.append(list(items))
        time.sleep(0.05)  # a slow search: the encoder's next batches queue up meanwhile
        if 99 in items:
            raise RuntimeError("search failed")
        return [r + 1 for r in results]

    batcher = MicroBatcher(lambda items: [i * 10 for i in items], max_size=2, max_wait_s=0.0, then=then)

    async def submit_both():
        first = await asyncio.gather(*(batcher.submit(i) for i in range(7)))
        return first, await batcher.submit(99)

    try:
        first, failed = asyncio.run(submit_both())
        assert first == [i * 10 + 1 for i in range(7)]
        assert sorted(i for call in calls[:-1] for i in call) == list(range(7))
        assert max(len(call) for call in calls) > 2  # encoded batches of at most 2, searched together
        assert failed == 990  # a failing stage answers with what the encoder gave
    finally:
        batcher.close()


def test_the_search_stage_is_on_by_default_only_for_large_exact_spaces(text_index):
    from vitrina.index.product_index import FLAT_MAX

    live = LiveIndex(text_index, VitrinaConfig(progress=False), ServingConfig(), ServiceMetrics())
    try:
        space = live.session.directory.spaces["text"]
        assert space.index.is_exact and space.index.ntotal < FLAT_MAX
        assert live.search_stage is False and live.text_batcher._then is None  # a tiny exact index: searched inline
    finally:
        live.close()
    forced = LiveIndex(text_index, VitrinaConfig(progress=False), ServingConfig(search_stage=True), ServiceMetrics())
    try:
        assert forced.search_stage is True and forced.text_batcher._then is not None
    finally:
        forced.close()
