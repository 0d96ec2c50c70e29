"""Exact product codes first (engine.query.exact): the lookup, and a query that is a product's id or code ranking
that product first in Python, the CLI and HTTP, inside filters, once, and across pages."""

from __future__ import annotations

import json
import numpy as np
import pytest

import vitrina
from vitrina.engine.query.exact import ExactCodes, code_key, code_tokens, is_code
from tests.helpers import demo_rows, run_cli, write_csv


def test_code_like_tokens_mix_digits_and_letters_or_are_long_digit_runs():
    assert code_tokens("Rheem RG6-KIT water heater kit") == {"rg6kit", "rg6"}
    assert code_tokens("Sony WH-1000XM4, model 100652, x100") == {"wh1000xm4", "1000xm4", "100652", "x100"}
    for text in ("36 in. x 80 in. door", "60W 12V bulb 2x4 stud 5-tier 9-pocket", "1990s style 4K 1080p",
                 "12-2/14-2 wire 3.5mm 1/2 in.", "1234 pieces", "plain words only"):
        assert code_tokens(text) == set(), text
    assert code_key("WH-1000XM4") == code_key("wh1000xm4") == "wh1000xm4"
    assert code_key("12-2/14-2") != code_key("122142")  # digits only: separators kept, no false run
    assert is_code("100652") and not is_code("1234") and not is_code("watch")


def test_the_lookup_finds_ids_and_rare_codes_case_insensitively():
    texts = ["Rheem RG6 kit", "RG6 spare part", "Sony WH-1000XM4 headphones", "plain"] + ["AB12 common"] * 11
    codes = ExactCodes.build(["SKU-1", "p-2", "100652", "x"] + [f"c{i}" for i in range(11)], texts)
    assert list(codes.rows_of("rg6")) == [0, 1] and list(codes.rows_of("Wh1000Xm4")) == [2]
    assert list(codes.rows_of("sku1")) == [0] and list(codes.rows_of("SKU-1")) == [0] and list(codes.rows_of("P-2")) == [1]
    assert list(codes.rows_of("100652")) == [2]
    assert list(codes.rows_of("ab12")) == []  # held by 11 products: a catalog word, not a code
    assert list(codes.rows_of("rg6 kit")) == [] and list(codes.rows_of("  ")) == []  # one token only
    assert list(codes.rows_of("x")) == [3]  # an id matches whatever its shape
    allowed = np.array([False, True, True, True] + [True] * 11)
    assert list(codes.rows_of("rg6", allowed)) == [1] and list(codes.rows_of("sku1", allowed)) == []


@pytest.fixture(scope="module")
def shop(tiny_bert_dir, tmp_path_factory) -> dict:
    """A text-only demo catalog with prices, two products carrying codes, indexed with the tiny text model."""
    dest = tmp_path_factory.mktemp("exact")
    rows = [{"id": r["id"], "title": r["title"], "articleType": r["articleType"], "price": f"{int(r['id']) % 50 + 5}.00"}
            for r in demo_rows()[:200]]
    ids = [r["id"] for r in rows]
    coded = {ids[10]: "RG6-KIT", ids[20]: "X100"}
    for r in rows:
        if r["id"] in coded:
            r["title"] = f"{r['title']} model {coded[r['id']]}"
    catalog = write_csv(dest / "products.csv", rows)
    path = dest / "index"
    config = vitrina.VitrinaConfig(progress=False)
    vitrina.Index.build(catalog, path, text_fields=["title"], text_model=str(tiny_bert_dir), config=config,
                        versioned=False)
    return {"path": path, "config": config, "rows": rows, "coded": coded, "ids": ids}


@pytest.mark.parametrize("mode", ["lexical", "dense", "hybrid"])
def test_a_code_or_id_query_ranks_its_product_first(shop, mode):
    index = vitrina.Index.open(shop["path"], shop["config"])
    rg6, x100 = shop["ids"][10], shop["ids"][20]
    for query, expected in (("rg6-kit", rg6), ("RG6KIT", rg6), ("x100", x100), (shop["ids"][77], shop["ids"][77])):
        hits = index.search(query, k=5, mode=mode)
        assert hits[0].id == expected, (query, mode)
        assert [h.id for h in hits].count(expected) == 1  # not repeated further down
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))  # scores never rise down the list


def test_exact_matching_off_gives_the_plain_ranking(shop):
    from vitrina.engine.query.search import SearchSession

    session = SearchSession(shop["path"], shop["config"])
    on = session.search(shop["ids"][77], k=5, mode="dense")[0]
    session.exact_match = False
    session.__dict__.pop("exact_codes", None)
    off = session.search(shop["ids"][77], k=5, mode="dense")[0]
    assert on[0].id == shop["ids"][77] and off[0].id != shop["ids"][77]  # dense alone does not know ids
    assert [h.id for h in on[1:]] == [h.id for h in off if h.id != shop["ids"][77]][:4]


def test_filters_pages_and_multi_word_queries(shop):
    index = vitrina.Index.open(shop["path"], shop["config"])
    target = shop["ids"][77]
    row = next(r for r in shop["rows"] if r["id"] == target)
    price = float(row["price"])
    outside = index.search(target, k=5, mode="dense", price=(price + 1, 1000))
    assert target not in [h.id for h in outside]  # a filtered-out product is never added
    inside = index.search(target, k=5, mode="dense", price=(price, price))
    assert inside[0].id == target
    whole = index.search(target, k=10, mode="hybrid")
    pages = [h.id for off in (0, 5) for h in index.search(target, k=5, offset=off, mode="hybrid")]
    assert pages == [h.id for h in whole] and pages[0] == target
    by_price = index.search(target, k=5, mode="lexical", sort="price_asc")  # price sorts order by price only
    assert [float(h.product["price"]) for h in by_price] == sorted(float(h.product["price"]) for h in by_price)


def test_cli_and_http_put_the_exact_match_first(shop):
    from tests.serving_util import ready_client

    rg6 = shop["ids"][10]
    code, out, err = run_cli("search", shop["path"], "RG6-KIT", "--json", "-k", "3", "--mode", "dense")
    assert code == 0, err
    assert json.loads(out)["results"][0]["id"] == rg6
    client = ready_client(shop["path"])
    try:
        body = client.get("/search", params={"q": "rg6kit", "k": 3, "mode": "dense"}).json()
        assert body["results"][0]["id"] == rg6 and set(body) == {"results", "index_version"}
        paged = client.get("/search", params={"q": "rg6kit", "k": 3, "offset": 3, "mode": "dense"}).json()
        assert rg6 not in [h["id"] for h in paged["results"]]
    finally:
        client.__exit__(None, None, None)
