"""Merchandising rules: the file format and its checks, pattern matching, and pin / boost / bury / hide applied in
Python, the CLI and HTTP, stored as a setting of the index version (reloaded by a server)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

import vitrina
from vitrina.engine.query.rules import RulesError, parse_rules, read_rules_file
from vitrina.engine.query.rules.apply import RULES_DEPTH
from vitrina.engine.query.rules.matching import PatternIndex
from vitrina.engine.query.rules.model import MAX_FILE_BYTES, MAX_POSITION, MAX_RULES
from vitrina.engine.query.rules.stored import RULES_SETTING
from vitrina.index.hybrid import HybridConfig
from vitrina.index.versions import resolve_index_path
from tests.helpers import demo_rows, run_cli, write_csv
from tests.serving_util import KEY, ready_client

TYPES = ("Watches", "Sports Shoes", "Wallets", "Tshirts", "Handbags", "Casual Shoes")
CONFIG = vitrina.VitrinaConfig(progress=False, hybrid=HybridConfig(candidates=20))


def shop_rows() -> list[dict]:
    """Demo products of six types with a brand, a price and an in_stock flag (every third out of stock)."""
    rows = demo_rows()
    picked = [dict(r) for kind in TYPES for r in [r for r in rows if r["articleType"] == kind][:10]]
    for i, r in enumerate(picked):
        r["brand"] = r["title"].split()[0]
        r["price"] = f"{int(r['id']) % 90 + 5}.99"
        r["in_stock"] = "false" if i % 3 == 0 else "true"
        r.pop("image")
    return picked


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_bert_dir) -> tuple[Path, list[dict]]:
    """A versioned root over the shop catalog, without rules (copied by `shop` for each test that changes it)."""
    rows = shop_rows()
    folder = tmp_path_factory.mktemp("rules-shop")
    catalog = write_csv(folder / "products.csv", rows)
    root = folder / "root"
    vitrina.Index.build(catalog, root, text_fields=["title"], image_field=None, config=CONFIG,
                        text_model=str(tiny_bert_dir), image_model="none")
    return root, rows


@pytest.fixture
def shop(built, tmp_path) -> tuple[vitrina.Index, list[dict]]:
    root, rows = built
    copy = tmp_path / "root"
    shutil.copytree(root, copy, symlinks=True)
    return vitrina.Index.open(copy, CONFIG), rows


def ids(hits) -> list[str]:
    return [h.id for h in hits]


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in rows}


# --- the file format --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, words", [
    ([], ["an object with a 'rules' list"]),
    ({"rules": [], "extra": 1}, ["unknown key 'extra'"]),
    ({"rules": {}}, ["'rules' must be a list"]),
    ({"rules": [{"query": "x", "hide": ["1"]}]}, ["rule 1", "id:"]),
    ({"rules": [{"id": "a", "query": "x", "hide": ["1"], "colour": "red"}]}, ["rule 1 (id 'a')", "unknown key 'colour'"]),
    ({"rules": [{"id": "a", "hide": ["1"]}]}, ["rule 1 (id 'a')", "exactly one pattern", "none"]),
    ({"rules": [{"id": "a", "query": "x", "contains": "y", "hide": ["1"]}]}, ["exactly one pattern", "query, contains"]),
    ({"rules": [{"id": "a", "query": "x"}]}, ["rule 1 (id 'a')", "at least one action"]),
    ({"rules": [{"id": "a", "any": "yes", "hide": ["1"]}]}, ["any: must be true"]),
    ({"rules": [{"id": "a", "query": "  ", "hide": ["1"]}]}, ["query: must be text"]),
    ({"rules": [{"id": "a", "contains": "a b c d e f g h i", "hide": ["1"]}]}, ["contains: 9 words"]),
    ({"rules": [{"id": "a", "query": "x", "pin": [{"product": "1", "position": 0}]}]}, ["pin 1: position", "from 1"]),
    ({"rules": [{"id": "a", "query": "x", "pin": [{"product": "1", "position": MAX_POSITION + 1}]}]}, ["position"]),
    ({"rules": [{"id": "a", "query": "x", "pin": [{"product": "1", "position": "2"}]}]}, ["pin 1: position"]),
    ({"rules": [{"id": "a", "query": "x", "pin": [{"product": "1", "position": True}]}]}, ["pin 1: position"]),
    ({"rules": [{"id": "a", "query": "x", "pin": [{"product": "1", "position": 2}, {"product": "2", "position": 2}]}]},
     ["pin 2: position: 2 is taken"]),
    ({"rules": [{"id": "a", "query": "x", "pin": [{"product": "1", "at": 2}]}]}, ["pin 1: unknown key 'at'"]),
    ({"rules": [{"id": "a", "query": "x", "pin": [{"position": 2}]}]}, ["pin 1: product: must be a product id"]),
    ({"rules": [{"id": "a", "query": "x", "hide": []}]}, ["hide: give a list of product ids"]),
    ({"rules": [{"id": "a", "query": "x", "bury": "in_stock"}]}, ["bury:", "not FIELD=VALUE"]),
    ({"rules": [{"id": "a", "query": "x", "boost": {"price": {"min": 9, "max": 2}}}]}, ["boost: price", "starts above"]),
    ({"rules": [{"id": "a", "query": "x", "boost": {"price": {"low": 2}}}]}, ["boost: price", "{min, max}"]),
    ({"rules": [{"id": "a", "query": "x", "boost": {"brand": None}}]}, ["boost: brand", "not a value"]),
    ({"rules": [{"id": "a", "query": "x", "hide": ["1"]}, {"id": "a", "any": True, "hide": ["2"]}]},
     ["rule 2 (id 'a')", "rule 1 has the same id"]),
])
def test_a_bad_rules_file_names_the_file_rule_and_field(data, words) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(data, "shop-rules.json")
    message = str(caught.value)
    assert message.startswith("shop-rules.json")
    for word in words:
        assert word in message


def test_rules_files_are_json_or_yaml_and_bounded(tmp_path) -> None:
    data = {"rules": [{"id": "pin-it", "query": "Red  Shirt", "pin": [{"product": 7, "position": 1}]},
                      {"id": "oos", "any": True, "bury": ["in_stock=false", "price>=10"]}]}
    (tmp_path / "r.json").write_text(json.dumps(data))
    (tmp_path / "r.yaml").write_text("rules:\n  - id: pin-it\n    query: Red  Shirt\n    pin: [{product: 7, position: 1}]\n"
                                     "  - id: oos\n    any: true\n    bury: [in_stock=false, price>=10]\n")
    from_json, from_yaml = read_rules_file(tmp_path / "r.json"), read_rules_file(tmp_path / "r.yaml")
    assert from_json.rules == from_yaml.rules
    assert from_json.rules[0].pattern == "red shirt" and from_json.rules[0].pins[0].product == "7"
    assert from_json.rules[1].bury == {"in_stock": "false", "price": (10.0, None)}
    assert parse_rules(from_json.to_json()).rules == from_json.rules  # the stored form reads back the same

    (tmp_path / "bad.yaml").write_text("rules:\n  - id: a\n    query: [unclosed\n")
    with pytest.raises(RulesError, match=r"bad.yaml, line \d+: not valid YAML"):
        read_rules_file(tmp_path / "bad.yaml")
    (tmp_path / "bad.json").write_text('{"rules": [\n{"id": "a",}]}')
    with pytest.raises(RulesError, match=r"bad.json, line 2: not valid JSON"):
        read_rules_file(tmp_path / "bad.json")
    (tmp_path / "r.txt").write_text("{}")
    with pytest.raises(RulesError, match=r"r.txt: a rules file is .json, .yaml or .yml"):
        read_rules_file(tmp_path / "r.txt")
    with open(tmp_path / "big.json", "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(RulesError, match="big.json: .* bytes; a rules file may hold at most"):
        read_rules_file(tmp_path / "big.json")
    many = {"rules": [{"id": str(i), "query": f"q{i}", "hide": ["1"]} for i in range(MAX_RULES + 1)]}
    with pytest.raises(RulesError, match=f"{MAX_RULES + 1} rules; give at most {MAX_RULES}"):
        parse_rules(many, "many.json")


# --- matching ---------------------------------------------------------------------------------------------------

def test_patterns_match_exactly_by_whole_words_or_always_in_file_order() -> None:
    rules = parse_rules({"rules": [
        {"id": "any", "any": True, "hide": ["1"]},
        {"id": "exact", "query": "Running  SHOES", "hide": ["1"]},
        {"id": "words", "contains": "shoes", "hide": ["1"]},
        {"id": "two-words", "contains": "running shoes", "hide": ["1"]},
    ]})
    index = PatternIndex(rules)
    fired = lambda *q: [r.id for r in index.matching(*q)]  # noqa: E731
    assert fired("running shoes") == ["any", "exact", "words", "two-words"]
    assert fired("  RUNNING   shoes ") == ["any", "exact", "words", "two-words"]
    assert fired("red running shoes for men") == ["any", "words", "two-words"]
    assert fired("shoeshine kit") == ["any"]  # whole words, not substrings
    assert fired("shoes running") == ["any", "words"]
    assert fired("runing shoez", "running shoes") == ["any", "exact", "words", "two-words"]  # the corrected query
    assert fired("runing shoez", None) == ["any"]


def test_matching_cost_stays_small_with_ten_thousand_rules() -> None:
    words = [f"w{i}" for i in range(2000)]
    rules = [{"id": f"e{i}", "query": f"{words[i % 2000]} {words[(i * 7) % 2000]}", "hide": ["1"]} for i in range(5000)]
    rules += [{"id": f"c{i}", "contains": " ".join(words[(i + j) % 2000] for j in range(1 + i % 3)), "hide": ["1"]}
              for i in range(5000)]
    index = PatternIndex(parse_rules({"rules": rules}))
    queries = [" ".join(words[(i * 13 + j) % 2000] for j in range(2 + i % 6)) for i in range(500)]
    started = time.perf_counter()
    fired = [index.matching(q) for q in queries]
    per_query = (time.perf_counter() - started) / len(queries)
    assert per_query < 0.002, f"{per_query * 1e3:.3f} ms a query"
    brute = [[r.id for r in parse_rules({"rules": rules}).rules if _fires(r, q)] for q in queries[:50]]
    assert [[r.id for r in f] for f in fired[:50]] == brute


def _fires(rule, query: str) -> bool:
    return query == rule.pattern if rule.kind == "exact" else f" {rule.pattern} " in f" {query} "


# --- applied to an index (Python) -------------------------------------------------------------------------------

def test_an_index_without_rules_answers_as_before(shop) -> None:
    index, _ = shop
    assert index.rules is None
    hits = index.search("shoes", 10)
    assert hits.rules_fired == [] and "rules_fired" not in repr(hits)


def test_pin_puts_a_product_at_its_position_within_the_filters_and_pages(shop) -> None:
    index, rows = shop
    plain = ids(index.search("shoes", 30))
    watch = next(r["id"] for r in rows if r["articleType"] == "Watches" and r["id"] not in plain[:10])
    moved = plain[6]
    index.set_rules({"rules": [{"id": "pins", "query": "shoes", "pin": [{"product": watch, "position": 2},
                                                                       {"product": moved, "position": 1}]}]})
    hits = index.search("Shoes", 10)
    assert hits.rules_fired == ["pins"]
    assert ids(hits)[:2] == [moved, watch]
    assert ids(hits)[2:] == [i for i in plain if i not in (moved, watch)][:8]
    pages = ids(index.search("shoes", 4)) + ids(index.search("shoes", 4, offset=4)) + ids(index.search("shoes", 4, offset=8))
    assert pages == ids(index.search("shoes", 12)) and pages[:10] == ids(hits)
    kind = by_id(rows)[moved]["articleType"]
    filtered = index.search("shoes", 10, where={"articleType": kind})
    assert watch not in ids(filtered) and ids(filtered)[0] == moved  # the watch is outside the filter
    assert index.search("shoes", 10, sort="price_asc").rules_fired == []  # pins order by relevance only
    assert index.search("red shoes", 10).rules_fired == []


def test_bury_and_boost_reorder_by_a_condition(shop) -> None:
    index, rows = shop
    stock = {r["id"]: r["in_stock"] for r in rows}
    plain = ids(index.search("shoes", RULES_DEPTH))
    assert "false" in [stock[i] for i in plain[:10]]
    index.set_rules({"rules": [{"id": "oos", "any": True, "bury": {"in_stock": False}}]})
    buried = index.search("shoes", len(plain))
    assert buried.rules_fired == ["oos"]
    flags = [stock[i] for i in ids(buried)]
    assert flags == sorted(flags, key=lambda f: f == "false")  # every in-stock product before every other
    assert ids(buried) == [i for i in plain if stock[i] == "true"] + [i for i in plain if stock[i] == "false"]
    pages = [ids(index.search("shoes", 5, offset=o)) for o in range(0, 20, 5)]
    assert sum(pages, []) == ids(buried)[:20]

    cheap = {r["id"] for r in rows if float(r["price"]) <= 30}
    index.set_rules({"rules": [{"id": "cheap", "contains": "shoes", "boost": "price<=30"}]})
    boosted = index.search("men shoes", len(plain))
    first = [i in cheap for i in ids(boosted)]
    assert boosted.rules_fired == ["cheap"] and first == sorted(first, reverse=True) and any(first)


def test_hide_removes_products_from_hits_facets_and_price_sorts(shop) -> None:
    index, rows = shop
    plain = index.search("shoes", 13, facets=["articleType"])
    gone = ids(plain)[:3]
    index.set_rules({"rules": [{"id": "recall", "contains": "shoes", "hide": gone},
                               {"id": "pin", "contains": "shoes", "pin": [{"product": gone[0], "position": 1}]}]})
    hits = index.search("shoes", 10, facets=["articleType"])
    assert hits.rules_fired == ["recall", "pin"]
    assert not set(gone) & set(ids(hits))  # hide wins over a pin
    assert ids(hits) == ids(plain)[3:]
    assert hits.total == plain.total - 3
    kinds = by_id(rows)
    expected = dict(plain.facets["articleType"])
    for product in gone:
        expected[kinds[product]["articleType"]] -= 1
    assert hits.facets["articleType"] == {kind: n for kind, n in expected.items() if n}
    by_price = index.search("shoes", 50, sort="price_asc")
    assert by_price.rules_fired == ["recall"] and not set(gone) & set(ids(by_price))


def test_each_query_of_a_batch_fires_its_own_rules(shop) -> None:
    index, rows = shop
    top_wallet = index.search("leather wallet", 1)[0].id
    index.set_rules({"rules": [{"id": "shoe-pin", "contains": "shoes", "pin": [{"product": rows[0]["id"], "position": 1}]},
                               {"id": "wallet-hide", "query": "leather wallet", "hide": [top_wallet]}]})
    shoes, wallet, other = index.search(["sports shoes", "Leather Wallet", "black watch"], 5)
    assert shoes.rules_fired == ["shoe-pin"] and shoes[0].id == rows[0]["id"]
    assert wallet.rules_fired == ["wallet-hide"] and top_wallet not in ids(wallet)
    assert other.rules_fired == []
    assert ids(other) == ids(index.search("black watch", 5))


def test_rules_act_after_a_shoppers_re_ranking(shop) -> None:
    index, rows = shop
    events = [{"user_id": f"u{u}", "product_id": r["id"], "event": "purchase", "timestamp": f"2024-02-0{1 + j}T10:00:00Z"}
              for u in range(4) for j, r in enumerate(rows[u::4][:5])]
    index.add_events(events, settings=vitrina.BehaviourConfig(factors=2, iterations=5))
    personal = index.search("shoes", 13, user="u1")
    assert personal.personalised and ids(personal) != ids(index.search("shoes", 13))
    pinned, hidden = rows[-1]["id"], ids(personal)[0]
    index.set_rules({"rules": [{"id": "r", "contains": "shoes", "hide": [hidden], "pin": [{"product": pinned, "position": 3}]}]})
    again = index.search("shoes", 10, user="u1")
    assert again.personalised and again.rules_fired == ["r"]
    expected = [i for i in ids(personal) if i not in (hidden, pinned)]
    assert ids(again) == (expected[:2] + [pinned] + expected[2:])[:10]


def test_an_exact_rule_fires_on_the_corrected_query(shop) -> None:
    index, rows = shop
    index.set_rules({"rules": [{"id": "watches", "query": "black watch", "pin": [{"product": rows[0]["id"], "position": 1}]}]})
    hits = index.search("blak watch", 5, mode="lexical")
    assert hits.corrected_query == "black watch"
    assert hits.rules_fired == ["watches"] and hits[0].id == rows[0]["id"]


def test_set_rules_checks_the_catalog_and_publishes_a_version(shop) -> None:
    index, rows = shop
    before = index.manifest.version
    cases = [
        ({"id": "a", "query": "x", "pin": [{"product": "no-such-id", "position": 1}]}, "rule 1 (id 'a'): pin: product 'no-such-id' is not in the index"),
        ({"id": "b", "query": "x", "hide": ["no-such-id"]}, "rule 1 (id 'b'): hide: product 'no-such-id' is not in the index"),
        ({"id": "c", "any": True, "bury": "stock=false"}, "rule 1 (id 'c'): bury: this catalog has no column 'stock'"),
        ({"id": "d", "any": True, "bury": "in_stock=flase"}, "rule 1 (id 'd'): bury: no product has in_stock 'flase'"),
        ({"id": "e", "any": True, "boost": "brand>=3"}, "rule 1 (id 'e'): boost:"),
    ]
    for rule, message in cases:
        with pytest.raises(RulesError) as caught:
            index.set_rules({"rules": [rule]})
        assert message in str(caught.value)
    with pytest.raises(RulesError) as caught:
        index.set_rules({"rules": [rule for rule, _ in cases]})
    assert str(caught.value).count("rule ") == len(cases)  # every misfit named at once
    assert "rule 5 (id 'e')" in str(caught.value)
    assert index.manifest.version == before and index.rules is None  # nothing was published

    first = index.set_rules({"rules": [{"id": "hide-one", "any": True, "hide": [rows[0]["id"]]}]})
    assert first == resolve_index_path(index.path)
    assert index.manifest.version != before and (first / "settings" / RULES_SETTING).is_file()
    assert index.rules == {"rules": [{"id": "hide-one", "any": True, "hide": [rows[0]["id"]]}]}
    index.set_rules(None)
    assert index.rules is None and index.search("shoes", 5).rules_fired == []
    assert (first / "settings" / RULES_SETTING).is_file()  # the earlier version keeps its rules


def test_rules_stay_with_upserts_and_a_deleted_product_is_left_out(shop, caplog) -> None:
    index, rows = shop
    gone, kept = rows[1]["id"], rows[2]["id"]
    index.set_rules({"rules": [{"id": "pins", "any": True, "pin": [{"product": gone, "position": 1},
                                                                  {"product": kept, "position": 2}]}]})
    index.delete([gone])
    with caplog.at_level("WARNING", logger="vitrina"):
        hits = index.search("shoes", 5)
    assert hits.rules_fired == ["pins"] and hits[1].id == kept and gone not in ids(hits)
    assert f"pin: product {gone!r} is not in the index" in caplog.text


def test_build_stores_rules_and_checks_them(built, tmp_path, tiny_bert_dir) -> None:
    _, rows = built
    catalog = write_csv(tmp_path / "products.csv", rows)
    rules = {"rules": [{"id": "oos", "any": True, "bury": "in_stock=false"}]}
    index = vitrina.Index.build(catalog, tmp_path / "plain", text_fields=["title"], image_field=None, config=CONFIG,
                                text_model=str(tiny_bert_dir), image_model="none", versioned=False, rules=rules)
    assert index.rules == {"rules": [{"id": "oos", "any": True, "bury": {"in_stock": "false"}}]}
    assert index.search("shoes", 5).rules_fired == ["oos"]
    assert not index.versioned
    index.set_rules({"rules": [{"id": "hide", "any": True, "hide": [rows[0]["id"]]}]})  # the directory becomes a root
    assert index.versioned and index.search("shoes", 5).rules_fired == ["hide"]
    with pytest.raises(RulesError, match="rules: rule 1 .id 'x'.: unknown key 'pins'"):
        vitrina.Index.build(catalog, tmp_path / "never", text_fields=["title"], rules={"rules": [
            {"id": "x", "any": True, "pins": []}]}, config=CONFIG, text_model=str(tiny_bert_dir), image_model="none")
    assert not (tmp_path / "never").exists()  # the form is checked before indexing


# --- CLI --------------------------------------------------------------------------------------------------------

def test_cli_rules_publishes_shows_and_clears(shop, tmp_path) -> None:
    index, rows = shop
    root = index.path
    pinned = rows[0]["id"]
    (tmp_path / "rules.yaml").write_text(f"rules:\n  - id: pin-watch\n    query: shoes\n    pin:\n"
                                         f"      - {{product: '{pinned}', position: 1}}\n")
    code, out, err = run_cli("rules", root, tmp_path / "rules.yaml", "-q")
    assert code == 0, err
    assert "with 1 merchandising rule from" in out
    code, out, _ = run_cli("search", root, "shoes", "-k", "3", "--json")
    record = json.loads(out)
    assert record["rules_fired"] == ["pin-watch"] and record["results"][0]["id"] == pinned
    code, out, _ = run_cli("search", root, "shoes", "-k", "3")
    assert "Search: shoes (rules: pin-watch)" in out
    code, out, _ = run_cli("search", root, "wallet", "-k", "3", "--json")
    assert "rules_fired" not in json.loads(out)
    code, out, _ = run_cli("rules", root)
    assert "pin-watch: query 'shoes': pin " + pinned + "@1" in out
    code, out, _ = run_cli("rules", root, "--clear", "--json")
    assert code == 0 and json.loads(out)["rules"] == 0
    code, out, _ = run_cli("search", root, "shoes", "-k", "3", "--json")
    assert "rules_fired" not in json.loads(out)


def test_cli_rules_errors_name_the_file_rule_and_field(shop, tmp_path) -> None:
    index, _ = shop
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rules": [{"id": "p", "query": "x", "pin": [{"product": "nope", "position": 1}]}]}))
    code, out, err = run_cli("rules", index.path, bad)
    assert code == 1 and err.startswith("vitrina: error: ") and "Traceback" not in err
    assert f"{bad}: rule 1 (id 'p'): pin: product 'nope' is not in the index" in err
    code, _, err = run_cli("rules", index.path, tmp_path / "missing.json")
    assert code == 1 and "missing.json: no such rules file" in err
    code, _, err = run_cli("rules", index.path, bad, "--clear")
    assert code == 1 and "not both" in err


def test_cli_index_and_reindex_take_a_rules_file(built, tmp_path, tiny_bert_dir) -> None:
    _, rows = built
    catalog = write_csv(tmp_path / "products.csv", rows)
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": [{"id": "hide-first", "any": True, "hide": [rows[0]["id"]]}]}))
    flags = ["--text-fields", "title", "--text-model", tiny_bert_dir, "--image-model", "none", "-q"]
    for command in ("index", "reindex"):
        out_dir = tmp_path / command
        code, _, err = run_cli(command, catalog, "--out", out_dir, "--rules", rules, *flags)
        assert code == 0, err
        code, out, _ = run_cli("search", out_dir, "watch", "-k", "50", "--json")
        record = json.loads(out)
        assert record["rules_fired"] == ["hide-first"] and rows[0]["id"] not in [h["id"] for h in record["results"]]
    code, _, err = run_cli("upsert", tmp_path / "reindex", catalog, "-q")  # a new version keeps the rules
    assert code == 0, err
    assert json.loads(run_cli("search", tmp_path / "reindex", "watch", "--json")[1])["rules_fired"] == ["hide-first"]
    misfit = tmp_path / "misfit.json"
    misfit.write_text(json.dumps({"rules": [{"id": "m", "any": True, "hide": ["nope"]}]}))
    code, _, err = run_cli("index", catalog, "--out", tmp_path / "misfit", "--rules", misfit, *flags)
    assert code == 1 and "rule 1 (id 'm'): hide: product 'nope' is not in the index" in err
    assert "vitrina rules" in err


# --- HTTP -------------------------------------------------------------------------------------------------------

def test_http_reports_fired_rules_and_reload_picks_up_new_ones(shop) -> None:
    index, rows = shop
    pinned = rows[4]["id"]
    index.set_rules({"rules": [{"id": "pin-it", "contains": "shoes", "pin": [{"product": pinned, "position": 1}]}]})
    client = ready_client(index.path)
    try:
        answer = client.get("/search", params={"q": "running shoes", "k": 3}).json()
        assert answer["rules_fired"] == ["pin-it"] and answer["results"][0]["id"] == pinned
        assert "rules_fired" not in client.get("/search", params={"q": "wallet", "k": 3}).json()
        hidden = client.get("/search", params={"q": "shoes", "k": 3}).json()["results"][1]["id"]

        vitrina.Index.open(index.path, CONFIG).set_rules({"rules": [{"id": "hide-it", "any": True, "hide": [hidden]}]})
        assert client.get("/search", params={"q": "shoes", "k": 3}).json()["rules_fired"] == ["pin-it"]  # until reloaded
        swap = client.post("/admin/reload", headers={"X-API-Key": KEY})
        assert swap.status_code == 200
        answer = client.get("/search", params={"q": "shoes", "k": 50}).json()
        assert answer["rules_fired"] == ["hide-it"] and hidden not in [h["id"] for h in answer["results"]]
        assert answer["index_version"] == swap.json()["index_version"]

        live = resolve_index_path(index.path)  # a damaged rules file: the reload is refused, the old rules serve
        damaged = live.parent / "damaged"
        shutil.copytree(live, damaged)
        (damaged / "settings" / RULES_SETTING).write_text('{"rules": [{"id": "x"}]}')
        refused = client.post("/admin/reload", headers={"X-API-Key": KEY}, json={"path": str(damaged)})
        assert refused.status_code == 422
        assert client.get("/search", params={"q": "shoes", "k": 3}).json()["rules_fired"] == ["hide-it"]
    finally:
        client.__exit__(None, None, None)
