"""Synonyms (Solr format): parsing with errors naming file and line, bounds on hostile files, query expansion, and
search with them in both legs through Python, the CLI and HTTP (stored with the index, reloaded by the server)."""

from __future__ import annotations

import json
import shutil
import time

import pytest

import vitrina
from vitrina.index.synonyms import (MAX_EXTRAS, MAX_FILE_BYTES, MAX_LINE_CHARS, MAX_RULES_PER_PHRASE, SYNONYMS_FILE,
                                    Synonyms, SynonymsError)
from vitrina.index.settings import SETTINGS_DIR, read_setting
from vitrina.index.versions import is_versioned_root, resolve_index_path
from tests.helpers import demo_rows, run_cli, write_csv

RULES = """
# comments and blank lines are skipped

tv, television, telly
flat screen, flatscreen
laptop, Notebook => notebook
couch => sofa, settee
"""


@pytest.fixture(scope="module")
def synonyms() -> Synonyms:
    return Synonyms.parse(RULES, "syn.txt")


def expanded(synonyms: Synonyms, query: str) -> tuple[str, tuple[str, ...]] | None:
    expansion = synonyms.expand(query)
    return None if expansion is None else (expansion.text, expansion.extras)


def test_equivalent_phrases_add_the_others(synonyms):
    assert expanded(synonyms, "Samsung TV 55 in") == ("samsung tv 55 in", ("television", "telly"))
    assert expanded(synonyms, "flat screen television") == ("flat screen television", ("tv", "telly", "flatscreen"))
    assert synonyms.dense_query("Samsung TV") == "Samsung TV"  # the dense leg: equivalents not appended


def test_explicit_rules_replace_the_left_side(synonyms):
    assert expanded(synonyms, "gaming LAPTOP bag") == ("gaming notebook bag", ())
    assert expanded(synonyms, "leather couch") == ("leather sofa settee", ())
    assert synonyms.dense_query("Leather Couch") == "leather sofa settee"


def test_only_whole_words_match_and_no_rule_gives_none(synonyms):
    assert synonyms.expand("tvs and laptops") is None
    assert synonyms.expand("stv-1") is None
    assert expanded(synonyms, "tv-stand 1/2 in.") == ("tv-stand 1/2 in.", ("television", "telly"))  # text kept


def test_rules_apply_once_so_chains_and_cycles_end():
    swap = Synonyms.parse("a => b\nb => a\n", "cycle.txt")
    assert expanded(swap, "a b c") == ("b a c", ())  # one pass: no rule rewrites another's output
    chain = Synonyms.parse("red => crimson\ncrimson => scarlet\n", "chain.txt")
    assert expanded(chain, "red dress") == ("crimson dress", ())
    loop = Synonyms.parse("x, y\ny, z\nz, x\n", "loop.txt")
    assert expanded(loop, "x") == ("x", ("y", "z"))  # one level of equivalents, however the rules link up


def test_longest_phrase_wins_and_equivalents_are_capped():
    rules = Synonyms.parse("flat => level\nflat screen => monitor\n", "s.txt")
    assert expanded(rules, "flat screen") == ("monitor", ())
    many = Synonyms.parse(", ".join(f"w{i}" for i in range(100)) + "\n", "many.txt")
    assert len(many.expand("w0").extras) == MAX_EXTRAS
    wide = Synonyms.parse("".join(", ".join(["tv", *(f"t{r}x{i}" for i in range(99))]) + "\n" for r in range(20)), "wide.txt")
    expansion = wide.expand("tv")  # 20 rules of 100 phrases: 1,980 equivalents, 32 searched
    assert len(expansion.extras) == MAX_EXTRAS and sum(len(alts) for _, alts in expansion.groups) == MAX_EXTRAS


def test_store_and_load(synonyms, tmp_path):
    assert Synonyms.load(tmp_path) is None
    synonyms.save(tmp_path)
    assert Synonyms.load(tmp_path) == synonyms
    assert Synonyms.stored({SYNONYMS_FILE: synonyms.to_bytes()}) == synonyms


@pytest.mark.parametrize("text, message", [
    ("tv", "line 1: an equivalence needs two phrases"),
    ("a,,b", "line 1: an empty phrase"),
    ("ok, fine\na => b => c", "line 2: two '=>'"),
    ("a =>", "line 1: an empty phrase"),
    ("ok, fine\n!!!, tv", "line 2: the phrase '!!!' has no letters or digits"),
    ("a, b\n" + "x" * (MAX_LINE_CHARS + 1), f"line 2: the line is {MAX_LINE_CHARS + 1:,} characters long"),
    ("a, b\n\nc, d\x00e", "line 3: control character U+0000"),
    (", ".join(f"w{i}" for i in range(101)), "line 1: 101 phrases in one rule"),
    ("a b c d e f g h i j k, x", "line 1: the phrase 'a b c d e f g h i j k'... has 11 words"),
    ("".join(f"tv, t{i}\n" for i in range(MAX_RULES_PER_PHRASE + 1)),
     f"line {MAX_RULES_PER_PHRASE + 1}: 'tv' is in more than {MAX_RULES_PER_PHRASE} rules"),
])
def test_parse_errors_name_the_file_and_line(text, message):
    with pytest.raises(SynonymsError) as exc:
        Synonyms.parse(text, "syn.txt")
    assert str(exc.value).startswith("syn.txt, line ") and message in str(exc.value)


def test_hostile_files_are_refused_with_the_file_named(tmp_path):
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: never really written
    with pytest.raises(SynonymsError, match=f"{huge} is {MAX_FILE_BYTES + 1:,} bytes"):
        Synonyms.read(huge)
    binary = tmp_path / "photo.jpg"
    binary.write_bytes(b"tv, television\n\xff\xd8\xff\xe0\x00\x10JFIF")
    with pytest.raises(SynonymsError, match=rf"{binary}, line 2: not UTF-8 text \(byte 0xff\)"):
        Synonyms.read(binary)
    with pytest.raises(SynonymsError, match="synonyms file not found"):
        Synonyms.read(tmp_path / "missing.txt")
    with pytest.raises(SynonymsError, match="is not a file"):
        Synonyms.read(tmp_path)
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufefftv, télé\n".encode("utf-8"))
    assert expanded(Synonyms.read(bom), "TELE") == ("tele", ("tv",))


def test_a_big_file_parses_and_expands_quickly():
    text = "".join(f"word{i}, term{i}, thing {i}\nalias{i} => word{i}\n" for i in range(50_000))
    t0 = time.perf_counter()
    rules = Synonyms.parse(text, "big.txt")
    parsed = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(2_000):
        assert expanded(rules, f"blue alias{i * 7} for kids") == (f"blue word{i * 7} for kids", (f"term{i * 7}", f"thing {i * 7}"))
    assert parsed < 60  # seconds, on a loaded 2-core machine
    assert time.perf_counter() - t0 < 2  # 100,000 rules: expanding a query looks up its words, never scans the rules


def test_bm25_scores_added_phrases_below_typed_words_and_counts_them_as_held():
    import numpy as np

    from vitrina.index import LexicalIndex

    titles = ["Samsung TV stand", "Samsung television stand", "Garden hose", "Notebook sleeve"]
    lexical = LexicalIndex.build(titles)
    rows = np.arange(len(titles))
    assert list(lexical.scores_of("tv stand", rows)[1:3]) == [lexical.scores_of("stand", rows)[1], 0.0]
    assert list(lexical.coverage_of("tv stand", rows)) == [1.0, 0.5, 0.0, 0.0]
    lexical.synonyms = Synonyms.parse("tv, television\nlaptop => notebook\n", "syn.txt")
    scores = lexical.scores_of("tv stand", rows)
    assert scores[0] > scores[1] > 0 == scores[2]  # "television" found, just below the typed "tv"
    assert list(lexical.coverage_of("tv stand", rows)) == [1.0, 1.0, 0.0, 0.0]
    assert lexical.search(["laptop sleeve"], 2)[1][0][0] == 3  # rewritten: "notebook sleeve"
    assert lexical.coverage_of("laptop sleeve", rows)[3] == 1.0


# --- search with synonyms: the demo catalog through Python, the CLI and HTTP --------------------------------------

DEMO_SYNONYMS = """# a shop's synonyms
zorbleflex => wallet
jaket => sweatshirt
billfold, purse, wallet
"""


@pytest.fixture(scope="module")
def demo(tiny_bert_dir, tmp_path_factory) -> dict:
    """A text-only demo catalog, its synonyms file, and a plain index of it with the synonyms stored."""
    dest = tmp_path_factory.mktemp("synonyms-demo")
    rows = [{"id": r["id"], "title": r["title"], "articleType": r["articleType"]} for r in demo_rows()]
    catalog = write_csv(dest / "products.csv", rows)
    rules = dest / "synonyms.txt"
    rules.write_text(DEMO_SYNONYMS)
    config = vitrina.VitrinaConfig(progress=False)
    path = dest / "index"
    vitrina.Index.build(catalog, path, text_fields=["title"], text_model=str(tiny_bert_dir), config=config,
                        versioned=False, synonyms=rules)
    plain = dest / "plain"  # the same index without synonyms
    shutil.copytree(path, plain)
    shutil.rmtree(plain / SETTINGS_DIR)
    return {"catalog": catalog, "rules": rules, "index": path, "plain": plain, "config": config,
            "model": str(tiny_bert_dir), "types": {r["id"]: r["articleType"] for r in rows}}


def test_build_stores_the_synonyms_with_the_index(demo):
    assert read_setting(demo["index"], SYNONYMS_FILE) == DEMO_SYNONYMS.encode()
    with pytest.raises(SynonymsError, match="synonyms file not found"):
        vitrina.Index.build(demo["catalog"], demo["index"].parent / "x", synonyms=demo["index"].parent / "nope.txt")
    assert not (demo["index"].parent / "x").exists()


def test_lexical_leg_searches_the_rewritten_and_added_words(demo):
    index = vitrina.Index.open(demo["index"], demo["config"])
    without = vitrina.Index.open(demo["plain"], demo["config"])
    assert not without.search("zorbleflex", k=5, mode="lexical")
    hits = index.search("zorbleflex", k=5, mode="lexical")
    assert len(hits) == 5 and all(demo["types"][h.id] == "Wallets" for h in hits)
    purse = index.search("purse", k=10, mode="lexical")  # not a catalog word: its equivalent "wallet" is searched
    assert len(purse) == 10 and all(demo["types"][h.id] == "Wallets" for h in purse)
    assert not any(demo["types"][h.id] == "Wallets" for h in without.search("purse", k=10, mode="lexical"))


def test_typos_are_corrected_first_then_expanded_and_a_shops_word_is_not_corrected(demo):
    index = vitrina.Index.open(demo["index"], demo["config"])
    without = vitrina.Index.open(demo["plain"], demo["config"])
    walet = index.search("walet", k=5, mode="lexical")  # corrected to "wallet", then "billfold, purse" added
    assert walet.corrected_query == "wallet" and all(demo["types"][h.id] == "Wallets" for h in walet)
    assert without.search("jaket", k=5, mode="lexical").corrected_query == "jacket"
    jaket = index.search("jaket", k=5, mode="lexical")  # the shop's rule wins over the typo corrector
    assert jaket.corrected_query is None and all(demo["types"][h.id] == "Sweatshirts" for h in jaket)


def test_dense_leg_encodes_the_rewritten_query(demo):
    from vitrina.engine.query.compose import plan_text_search
    from vitrina.engine.query.search import SearchSession

    session = SearchSession(demo["index"], demo["config"])
    assert session.dense_text("zorbleflex", "dense") == "wallet"  # rewritten (equivalents are not appended)
    assert session.dense_text("Leather PURSE", "hybrid") == "Leather PURSE"  # equivalents only: as typed
    assert session.dense_text("black belt", "hybrid") == "black belt"  # no rule: as typed
    assert plan_text_search(session, "zorbleflex", 5, mode="hybrid").dense_queries == ("wallet",)
    index = vitrina.Index.open(demo["index"], demo["config"])
    dense = index.search("zorbleflex", k=10, mode="dense")
    assert [(h.id, h.score) for h in dense] == [(h.id, h.score) for h in index.search("wallet", k=10, mode="dense")]
    hybrid = index.search("zorbleflex", k=5)
    assert all(demo["types"][h.id] == "Wallets" for h in hybrid)


def test_queries_no_rule_matches_answer_exactly_as_without_synonyms(demo):
    index = vitrina.Index.open(demo["index"], demo["config"])
    without = vitrina.Index.open(demo["plain"], demo["config"])
    queries = ["black leather belt", "running shoes for men", "analog watch", "blue jeans", "jaket", "red top"]
    for mode in ("lexical", "dense", "hybrid"):
        for new, old in zip(index.search(queries[:4], k=10, mode=mode), without.search(queries[:4], k=10, mode=mode)):
            assert [(h.id, h.score) for h in new] == [(h.id, h.score) for h in old]
    assert index.search("red top", k=10) == without.search("red top", k=10)


def test_set_synonyms_publishes_a_version_and_none_removes_them(demo, tmp_path):
    path = tmp_path / "index"
    shutil.copytree(demo["plain"], path)
    index = vitrina.Index.open(path, demo["config"])
    assert not index.search("zorbleflex", k=5, mode="lexical")
    version_dir = index.set_synonyms(demo["rules"])
    assert is_versioned_root(path) and resolve_index_path(path) == version_dir
    assert len(index.search("zorbleflex", k=5, mode="lexical")) == 5  # the object sees its own write
    other = tmp_path / "other.txt"
    other.write_text("zorbleflex => watch\n")
    index.set_synonyms(other)
    assert all(demo["types"][h.id] == "Watches" for h in index.search("zorbleflex", k=5, mode="lexical"))
    index.upsert([{"id": "new-1", "title": "Zorbleflex brand new watch strap"}])  # upserts keep the synonyms
    assert read_setting(path, SYNONYMS_FILE) == b"zorbleflex => watch\n"
    bad = tmp_path / "bad.txt"
    bad.write_text("tv, television\nlaptop =>\n")
    with pytest.raises(SynonymsError, match=rf"{bad}, line 2: an empty phrase"):
        index.set_synonyms(bad)
    assert read_setting(path, SYNONYMS_FILE) == b"zorbleflex => watch\n"  # nothing published
    index.set_synonyms(None)
    assert read_setting(path, SYNONYMS_FILE) is None
    assert [h.id for h in index.search("zorbleflex", k=5, mode="lexical")] == ["new-1"]


def test_cli_index_reindex_and_synonyms_commands(demo, tmp_path):
    rules = demo["rules"]
    code, out, err = run_cli("index", demo["catalog"], "--out", tmp_path / "plain", "--text-fields", "title",
                             "--text-model", demo["model"], "--image-model", "none", "--synonyms", rules, "-q")
    assert code == 0, err
    code, out, err = run_cli("search", tmp_path / "plain", "zorbleflex", "--mode", "lexical", "--json", "-k", "3")
    assert code == 0, err
    assert [demo["types"][h["id"]] for h in json.loads(out)["results"]] == ["Wallets"] * 3

    root = tmp_path / "root"
    code, out, err = run_cli("reindex", demo["catalog"], "--out", root, "--text-fields", "title",
                             "--text-model", demo["model"], "--image-model", "none", "--synonyms", rules, "-q")
    assert code == 0, err
    code, out, err = run_cli("synonyms", root)
    assert code == 0 and out == DEMO_SYNONYMS
    other = tmp_path / "other.txt"
    other.write_text("zorbleflex => watch\n")
    code, out, err = run_cli("synonyms", root, other, "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["rules"] == 1 and resolve_index_path(root).name == record["version"]
    code, out, err = run_cli("search", root, "zorbleflex", "--mode", "lexical", "--json", "-k", "3")
    assert [demo["types"][h["id"]] for h in json.loads(out)["results"]] == ["Watches"] * 3
    code, out, err = run_cli("synonyms", root, "--clear")
    assert code == 0 and "synonyms cleared" in out
    code, out, err = run_cli("synonyms", root)
    assert code == 0 and out == f"{root}: no synonyms\n"

    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"tv, television\n\x00\x01\x02")
    for args in (("synonyms", root, bad), ("index", demo["catalog"], "--out", tmp_path / "x", "--synonyms", bad)):
        code, out, err = run_cli(*args)
        assert code == 1 and err.startswith(f"vitrina: error: {bad}, line 2: control character U+0000"), err
    assert not (tmp_path / "x").exists()
    code, out, err = run_cli("synonyms", root, other, "--clear")
    assert code == 1 and "not both" in err
    code, out, err = run_cli("synonyms", tmp_path / "nowhere", other)
    assert code == 1 and "is not a Vitrina index" in err
    code, out, err = run_cli("synonyms", tmp_path / "nowhere")
    assert code == 1 and "is not a Vitrina index" in err


def test_http_search_uses_the_synonyms_and_reload_picks_up_new_ones(demo, tmp_path):
    from tests.serving_util import KEY, ready_client

    root = tmp_path / "root"
    shutil.copytree(demo["index"], root)
    client = ready_client(root)
    try:
        body = client.get("/search", params={"q": "zorbleflex", "k": 3, "mode": "lexical"}).json()
        assert [demo["types"][h["id"]] for h in body["results"]] == ["Wallets"] * 3
        assert "corrected_query" not in body and set(body) == {"results", "index_version"}
        other = tmp_path / "other.txt"
        other.write_text("zorbleflex => watch\n")
        code, out, err = run_cli("synonyms", root, other)
        assert code == 0, err
        still = client.get("/search", params={"q": "zorbleflex", "k": 3, "mode": "lexical"}).json()
        assert still["index_version"] == body["index_version"]  # nothing changes under a server by itself
        swap = client.post("/admin/reload", headers={"X-API-Key": KEY})
        assert swap.status_code == 200, swap.text
        after = client.get("/search", params={"q": "zorbleflex", "k": 3}).json()
        assert after["index_version"] == resolve_index_path(root).name != body["index_version"]
        assert [demo["types"][h["id"]] for h in after["results"]] == ["Watches"] * 3
    finally:
        client.__exit__(None, None, None)
