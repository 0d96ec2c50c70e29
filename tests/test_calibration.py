"""Calibrated scores and the relevance floor: gibberish gets no results (with suggestions) in Python, CLI and HTTP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import vitrina
from vitrina.engine.build.calibrate import CALIBRATION_FILE, SpaceCalibration, read_calibration
from vitrina.engine.query.calibration import (COVERAGE_FLOOR, best_coverage, calibration_of, dense_relevance,
                                             popular_words, suggestions)
from vitrina.engine.query.search import SearchSession
from vitrina.index.versions import resolve_index_path
from tests.helpers import demo_rows, run_cli, write_csv
from tests.serving_util import ready_client

GIBBERISH = "xqzvkj wplrmq"
REAL = "black leather wallet"
CONFIG = vitrina.VitrinaConfig(progress=False)


@pytest.fixture(scope="module")
def demo_index(tiny_bert_dir, tmp_path_factory) -> Path:
    """A text-only plain index of the demo catalog (titles, article types, prices), with the tiny text model."""
    dest = tmp_path_factory.mktemp("calibration-demo")
    rows = [{"id": r["id"], "title": r["title"], "articleType": r["articleType"], "price": f"{int(r['id']) % 97 + 5}.99"}
            for r in demo_rows()]
    catalog = write_csv(dest / "products.csv", rows)
    path = dest / "index"
    vitrina.Index.build(catalog, path, text_fields=["title"], text_model=str(tiny_bert_dir), versioned=False,
                        config=CONFIG)
    return path


@pytest.fixture(scope="module")
def old_index(demo_index, tmp_path_factory) -> Path:
    """A copy without calibration.json: an index built before calibrated scores."""
    old = tmp_path_factory.mktemp("calibration-old") / "index"
    shutil.copytree(resolve_index_path(demo_index), old)
    (old / CALIBRATION_FILE).unlink()
    return old


def test_indexing_stores_the_calibration(demo_index):
    stored = read_calibration(resolve_index_path(demo_index))
    assert set(stored) == {"text"}
    text = stored["text"]
    assert -1.0 <= text.floor <= 1.0 and text.high >= text.floor + 0.05 and text.products == len(demo_rows())


def test_dense_relevance_is_half_at_the_floor_and_rises_with_similarity():
    calibration = SpaceCalibration("enc", 10, floor=0.4, high=0.7, probes=10)
    values = dense_relevance(np.array([-1.0, 0.4, 0.55, 0.7, 1.0]), calibration)
    assert values[1] == pytest.approx(0.5) and values[3] == pytest.approx(0.9)
    assert np.all(np.diff(values) > 0) and 0.0 <= values.min() and values.max() <= 1.0


def test_gibberish_gets_no_results_with_suggestions(demo_index):
    index = vitrina.Index.open(demo_index, CONFIG)
    hits = index.search(GIBBERISH, k=5)
    assert list(hits) == [] and hits.suggestions and all(isinstance(w, str) and w for w in hits.suggestions)
    assert index.search("wallte xqzvkj", k=5)  # "wallte" is corrected to "wallet": half the words are held
    assert index.search("xqzvkj leathr", k=5, mode="hybrid")  # "leathr" -> "leather"


def test_suggestions_are_close_catalog_words_else_the_most_frequent_ones(demo_index):
    session = SearchSession(demo_index, CONFIG)
    assert "wallet" in suggestions(session, "wallte xqzvkj")
    assert "leather" in suggestions(session, "xqzvkj laether")  # two edits (a transposition counts one)
    popular = popular_words(session)
    assert suggestions(session, "qqqqqqqq zzzzzzzz") == popular and len(popular) == 5
    counts = session.directory.lexical.vocabulary.counts
    assert [counts[w] for w in popular] == sorted((counts[w] for w in popular), reverse=True)


def test_a_real_query_gets_results_scored_in_zero_to_one(demo_index):
    hits = vitrina.Index.open(demo_index, CONFIG).search(REAL, k=10)
    assert len(hits) == 10 and hits.suggestions == []
    scores = [h.score for h in hits]
    assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)


def test_scores_mean_the_same_across_queries(demo_index):
    """Per-query min-max scaling gave every top hit the same score; calibrated, a weaker query scores lower."""
    index = vitrina.Index.open(demo_index, CONFIG)
    strong = index.search(REAL, k=3)[0].score
    weak = index.search("leather wallet xqzvkj wplrmq", k=3)  # half its words found: it answers, but weakly
    assert weak and weak[0].score < strong
    session = SearchSession(demo_index, CONFIG)  # gibberish's best candidate, had it answered, scores below both
    from vitrina.engine.query.compose import plan_text_search
    from vitrina.engine.query.calibration import plan_floor

    search = plan_text_search(session, [GIBBERISH, REAL], 3)
    floor = plan_floor(session, search, None)
    assert floor.below == [True, False]
    scores, rows = session.retrieve(list(search.queries), 3, "text", "hybrid", floor.query_vectors)
    calibrated = floor.scores(scores, rows)
    assert calibrated[0, 0] < weak[0].score < calibrated[1, 0]


def test_paged_scores_agree_with_the_unpaged_list(demo_index):
    index = vitrina.Index.open(demo_index, CONFIG)
    whole = index.search(REAL, k=10)
    page = index.search(REAL, k=5, offset=5)
    assert [(h.id, h.score) for h in page] == [(h.id, h.score) for h in whole[5:]]


def test_the_ranking_is_unchanged(demo_index, old_index):
    """Calibration changes the scores, never the order: compare with the raw hybrid ranking."""
    session = SearchSession(demo_index, CONFIG)
    _, rows = session.retrieve([REAL], 10, "text", "hybrid")
    assert [h.id for h in session.search(REAL, k=10)[0]] == [session.products.ids[r] for r in rows[0]]


def test_facets_of_gibberish_count_nothing_and_real_queries_drop_weak_dense_candidates(demo_index):
    session = SearchSession(demo_index, CONFIG)
    gibberish = session.search(GIBBERISH, k=5, facets=["articleType"])[0]
    assert list(gibberish) == [] and gibberish.total == 0 and gibberish.facets == {"articleType": {}}
    assert gibberish.price_range is None
    real = session.search(REAL, k=5, facets=["articleType"])[0]
    floor = calibration_of(session, "text").floor
    everything = session.matched([REAL], "text", "hybrid")[0][1]
    kept = session.matched([REAL], "text", "hybrid", dense_floor=floor)[0][1]
    assert real.total == len(kept) <= len(everything) and sum(real.facets["articleType"].values()) == len(kept)
    by_price = session.search(GIBBERISH, k=5, sort="price_asc")[0]
    assert list(by_price) == [] and by_price.suggestions


def test_dense_mode_and_lexical_mode_are_not_floored(demo_index):
    index = vitrina.Index.open(demo_index, CONFIG)
    dense = index.search(GIBBERISH, k=3, mode="dense")
    assert len(dense) == 3 and dense.suggestions == []  # dense: no floor (documented), raw cosine scores
    assert list(index.search(GIBBERISH, k=3, mode="lexical")) == []  # nothing shares a word


def test_an_index_without_calibration_still_answers_and_calibrates_on_load(demo_index, old_index):
    old, new = vitrina.Index.open(old_index, CONFIG), vitrina.Index.open(demo_index, CONFIG)
    assert not (old_index / CALIBRATION_FILE).exists()
    assert list(old.search(GIBBERISH, k=5)) == [] and old.search(GIBBERISH, k=5).suggestions
    assert [(h.id, h.score) for h in old.search(REAL, k=10)] == [(h.id, h.score) for h in new.search(REAL, k=10)]
    assert not (old_index / CALIBRATION_FILE).exists()  # measured in memory, the directory untouched


def test_a_damaged_calibration_file_is_measured_again(demo_index, tmp_path):
    copy = tmp_path / "index"
    shutil.copytree(resolve_index_path(demo_index), copy)
    (copy / CALIBRATION_FILE).write_text("{not json")
    assert read_calibration(copy) == {}
    assert list(vitrina.Index.open(copy, CONFIG).search(GIBBERISH, k=5)) == []
    assert vitrina.Index.open(copy, CONFIG).search(REAL, k=3)


def test_best_coverage_reads_corrected_words(demo_index):
    session = SearchSession(demo_index, CONFIG)
    assert best_coverage(session, GIBBERISH) == 0.0
    assert best_coverage(session, "leathr xqzvkj") >= COVERAGE_FLOOR


def test_cli_says_no_results_and_suggests_words(demo_index):
    code, out, err = run_cli("search", demo_index, GIBBERISH)
    assert code == 0, err
    assert out.startswith(f"No results for {GIBBERISH!r}; try: ") and len(out.strip().split("try: ")[1]) > 0
    code, out, err = run_cli("search", demo_index, GIBBERISH, "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["results"] == [] and record["suggestions"] and list(record) == ["query", "results", "suggestions"]
    code, out, err = run_cli("search", demo_index, REAL, "--json", "-k", "3")
    assert code == 0, err
    record = json.loads(out)
    assert len(record["results"]) == 3 and "suggestions" not in record


def test_http_answers_empty_results_with_suggestions(demo_index):
    client = ready_client(demo_index)
    try:
        body = client.get("/search", params={"q": GIBBERISH, "k": 5}).json()
        assert body["results"] == [] and body["suggestions"] and all(isinstance(w, str) for w in body["suggestions"])
        real = client.get("/search", params={"q": REAL, "k": 5}).json()
        assert len(real["results"]) == 5 and "suggestions" not in real
        assert all(0.0 <= h["score"] <= 1.0 for h in real["results"])
    finally:
        client.__exit__(None, None, None)


def test_each_published_version_of_a_versioned_root_is_calibrated(tiny_bert_dir, tmp_path):
    rows = [{"id": r["id"], "title": r["title"]} for r in demo_rows()[:60]]
    catalog = write_csv(tmp_path / "products.csv", rows)
    root = tmp_path / "root"
    index = vitrina.Index.build(catalog, root, text_fields=["title"], text_model=str(tiny_bert_dir), versioned=True,
                                config=CONFIG)
    first = resolve_index_path(root)
    assert read_calibration(first)["text"].products == 60
    index.upsert([{"id": "new-1", "title": "Blue leather wallet"}])
    second = resolve_index_path(root)
    assert second != first and read_calibration(second)["text"].products == 61
    assert list(vitrina.Index.open(root, CONFIG).search(GIBBERISH, k=3)) == []


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_build_calibrates_what_a_search_of_the_saved_index_would_measure(tiny_bert_dir, tmp_path, dtype):
    # `vitrina index` calibrates the directory it holds in memory (reading it back cost 0.2 s); float16 storage
    # is calibrated on the vectors searches read, not the float32 ones the build held
    from dataclasses import replace

    from vitrina.engine.build.calibrate import calibrate_space
    from vitrina.index.config import IndexConfig

    config = replace(CONFIG, index=IndexConfig(vector_dtype=dtype))
    rows = [{"id": r["id"], "title": r["title"]} for r in demo_rows()[:150]]
    path = tmp_path / "index"
    vitrina.Index.build(write_csv(tmp_path / "products.csv", rows), path, text_fields=["title"],
                        text_model=str(tiny_bert_dir), versioned=False, config=config)
    stored = read_calibration(path)["text"]
    measured = calibrate_space(SearchSession(path, config), "text")
    assert stored == measured and stored.products == 150
    held = SearchSession.over(SearchSession(path, config).directory, config)
    assert held.path == path and calibrate_space(held, "text") == measured


def test_a_session_needs_a_saved_directory(demo_index):
    directory = SearchSession(demo_index, CONFIG).directory
    directory.path = None
    with pytest.raises(ValueError, match="saved index directory"):
        SearchSession.over(directory)


def test_calibration_encodes_its_probes_without_spinning_threads(demo_index, monkeypatch):
    # between the probe batches it corrects typos and searches in Python: spinning ONNX Runtime threads took the CPU
    import vitrina.engine.build.calibrate as calibrate

    seen = []
    real = calibrate.calibrate_space
    monkeypatch.setattr(calibrate, "calibrate_space", lambda session, space: seen.append(session.config) or real(session, space))
    copy = SearchSession(demo_index, CONFIG).directory
    assert calibrate.calibrate_index(copy, CONFIG)["text"] == read_calibration(resolve_index_path(demo_index))["text"]
    assert [c.encoders.spin for c in seen] == [False] and CONFIG.encoders.spin
