"""Typo tolerance in the lexical leg: the catalog vocabulary, corrections, and `corrected_query` in Python, CLI and HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import vitrina
from vitrina.index import LexicalIndex
from vitrina.index.typos import VOCABULARY_FILE, max_distance
from vitrina.index.versions import resolve_index_path
from tests.helpers import demo_rows, run_cli, write_csv
from tests.serving_util import ready_client

TITLES = [
    "Everbilt 1/2 in. x 10 ft. Copper Pipe",
    "Masonite 36 in. x 80 in. Steel Entry Door",
    "Husky 5-Gallon Bucket",
    "Whirlpool Refrigerator with Freezer",
    "Rheem Water Heater RG6 Kit",
    "Nike Men Solid Grey Jacket",
    "Puma Women Black Jackets",
    "Levis Men Blue Jeans",
]


@pytest.fixture(scope="module")
def lexical() -> LexicalIndex:
    return LexicalIndex.build(TITLES)


def top(index: LexicalIndex, query: str, k: int = 3) -> list[str]:
    _, rows = index.search([query], k)
    return [TITLES[r] for r in rows[0] if r >= 0]


def test_edit_distance_grows_with_word_length():
    assert [max_distance("x" * n) for n in (2, 3, 4, 7, 8, 12)] == [0, 0, 1, 1, 2, 2]


def test_a_one_letter_slip_is_corrected_to_a_catalog_word(lexical):
    assert lexical.correct("jaket").text == "jacket"
    assert set(top(lexical, "jaket")) == {"Nike Men Solid Grey Jacket", "Puma Women Black Jackets"}
    assert lexical.correct("refrigirator").text == "refrigerator"  # 12 letters: two edits allowed
    assert top(lexical, "refrigirator", 1) == ["Whirlpool Refrigerator with Freezer"]
    assert lexical.correct("Copper Pipr").text == "Copper pipe"  # only the misspelled word changes


def test_short_words_numbers_units_and_sku_like_tokens_are_never_changed(lexical):
    for query in ("jet", "rg7 kit", "RG5", "36 inches", "5gal bucket", "x100", "1/2 in pipe", "2x4"):
        assert lexical.correct(query) is None, query
    assert lexical.correct("rg7 buckt").text == "rg7 bucket"  # the SKU-like token is kept, the word corrected


def test_known_words_and_stems_are_not_corrected(lexical):
    for query in ("jackets", "steel doors", "the bucket", "heaters"):
        assert lexical.correct(query) is None, query


def test_corrected_words_rank_below_exact_matches(lexical):
    exact = lexical.scores_of("jacket", np.arange(len(TITLES)))
    corrected = lexical.scores_of("jaket", np.arange(len(TITLES)))
    assert np.all(corrected <= exact) and np.all(corrected[exact > 0] < exact[exact > 0])
    assert lexical.coverage_of("jaket", np.array([5]))[0] == 1.0  # the corrected word counts as held


def test_clean_queries_score_exactly_as_without_correction(lexical):
    queries = ["copper pipe", "36 in. door", "black jackets", "xyz"]
    with_correction = lexical.search(queries, 5)
    lexical.correct_typos = False
    try:
        without = lexical.search(queries, 5)
        assert lexical.correct("jaket") is None
    finally:
        lexical.correct_typos = True
    assert np.array_equal(with_correction[0], without[0]) and np.array_equal(with_correction[1], without[1])


def test_vocabulary_is_stored_and_an_index_without_one_still_loads(lexical, tmp_path):
    lexical.save(tmp_path)
    stored = json.loads((tmp_path / VOCABULARY_FILE).read_text())
    assert stored["counts"]["jacket"] == 1 and stored["counts"]["jackets"] == 1 and "rg6" not in stored["counts"]
    loaded = LexicalIndex.load(tmp_path, lexical.describe())
    assert loaded.correct("jaket").text == "jacket"
    (tmp_path / VOCABULARY_FILE).unlink()
    old = LexicalIndex.load(tmp_path, lexical.describe())
    assert old.vocabulary is None and old.correct("jaket") is None
    assert top(old, "jacket") == top(lexical, "jacket")


# --- the demo catalog, through Python, the CLI and HTTP ----------------------------------------------------------

@pytest.fixture(scope="module")
def demo_index(tiny_bert_dir, tmp_path_factory) -> Path:
    """A text-only index of the whole demo catalog (its titles and article types), with the tiny text model."""
    dest = tmp_path_factory.mktemp("typos-demo")
    rows = [{"id": r["id"], "title": r["title"], "articleType": r["articleType"]} for r in demo_rows()]
    catalog = write_csv(dest / "products.csv", rows)
    path = dest / "index"
    vitrina.Index.build(catalog, path, text_fields=["title"], text_model=str(tiny_bert_dir),
                        config=vitrina.VitrinaConfig(progress=False))
    return path


def test_jaket_finds_jackets_on_the_demo_catalog(demo_index):
    index = vitrina.Index.open(demo_index, vitrina.VitrinaConfig(progress=False))
    hits = index.search("jaket", k=5, mode="lexical")
    assert hits.corrected_query == "jacket"
    assert hits and all(h.product["articleType"] == "Jackets" for h in hits)
    assert index.search("jaket", k=5).corrected_query == "jacket"  # hybrid: the lexical leg corrects
    assert index.search("jaket", k=5, mode="dense").corrected_query is None  # dense searches as typed
    clean = index.search("black jacket", k=5)
    assert clean.corrected_query is None and "corrected_query" not in repr(clean)


def test_hybrid_dense_leg_reads_the_corrected_query(demo_index):
    from vitrina.engine.query.compose import plan_text_search
    from vitrina.engine.query.search import SearchSession

    session = SearchSession(demo_index, vitrina.VitrinaConfig(progress=False))
    assert session.dense_text("jaket", "hybrid") == "jacket" and session.dense_text("jaket", "dense") == "jaket"
    assert plan_text_search(session, "jaket", 5, mode="hybrid").dense_queries == ("jacket",)
    fed = session.retrieve(["jaket"], 5, "text", "hybrid", session.encode_queries(["jacket"]))
    assert all(np.array_equal(a, b) for a, b in zip(session.retrieve(["jaket"], 5, "text", "hybrid"), fed))


def test_clean_queries_answer_exactly_as_without_a_vocabulary(demo_index, tmp_path):
    """A copy of the index without vocabulary.json is an index built before typo tolerance."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(resolve_index_path(demo_index), old)  # one version: a plain index directory
    (old / "lexical" / VOCABULARY_FILE).unlink()
    config = vitrina.VitrinaConfig(progress=False)
    new_index, old_index = vitrina.Index.open(demo_index, config), vitrina.Index.open(old, config)
    queries = ["black leather wallet", "running shoes for men", "analog watch", "blue jeans", "red top for women"]
    for mode in ("lexical", "hybrid"):
        for new, before in zip(new_index.search(queries, k=10, mode=mode), old_index.search(queries, k=10, mode=mode)):
            assert new.corrected_query is None and before.corrected_query is None
            assert [(h.id, h.score) for h in new] == [(h.id, h.score) for h in before]
    assert old_index.search("jaket", k=5).corrected_query is None  # no vocabulary: searched as typed


def test_cli_json_says_corrected_query_only_when_the_query_changed(demo_index):
    code, out, err = run_cli("search", demo_index, "jaket", "--mode", "lexical", "--json", "-k", "3")
    assert code == 0, err
    record = json.loads(out)
    assert list(record)[:3] == ["query", "corrected_query", "results"] and record["corrected_query"] == "jacket"
    code, out, err = run_cli("search", demo_index, "jacket", "--mode", "lexical", "--json", "-k", "3")
    assert code == 0, err
    assert "corrected_query" not in json.loads(out)


def test_http_search_says_corrected_query_only_when_the_query_changed(demo_index):
    client = ready_client(demo_index)
    try:
        body = client.get("/search", params={"q": "jaket", "k": 3, "mode": "lexical"}).json()
        assert body["corrected_query"] == "jacket" and body["results"]
        clean = client.get("/search", params={"q": "jacket", "k": 3, "mode": "lexical"}).json()
        assert "corrected_query" not in clean
        assert [h["id"] for h in clean["results"]] == [h["id"] for h in body["results"]]
        hybrid = client.get("/search", params={"q": "jaket", "k": 3}).json()  # the dense leg encodes "jacket"
        session = client.app.state.holder.current.session
        python = session.search("jaket", k=3)[0]
        assert hybrid["corrected_query"] == "jacket" == python.corrected_query
        assert [h["id"] for h in hybrid["results"]] == [h.id for h in python]
    finally:
        client.__exit__(None, None, None)
