"""Facets, price sorts and paging of a text search (Python and CLI), counted against brute force over the matched set."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import vitrina
from vitrina.engine.query.hits import MAX_K
from vitrina.index.hybrid import HybridConfig
from tests.helpers import demo_catalog, demo_rows, run_cli

TYPES = ("Watches", "Sports Shoes", "Wallets", "Tshirts", "Handbags")
QUERIES = ("black watch", "shoes for men", "leather wallet", "blue")


def shop_rows(per_type: int = 8) -> list[dict]:
    """Demo products of five types, each with a price (a few without one)."""
    rows = demo_rows()
    picked = [dict(r) for kind in TYPES for r in [r for r in rows if r["articleType"] == kind][:per_type]]
    for i, r in enumerate(picked):
        r["price"] = "" if i % 11 == 3 else f"{int(r['id']) % 90 + 5}.99"
    return picked


CONFIG = vitrina.VitrinaConfig(progress=False, hybrid=HybridConfig(candidates=6))


@pytest.fixture(scope="module")
def shop_path(tmp_path_factory, tiny_bert_dir) -> tuple[Path, list[dict]]:
    """A text-only index whose hybrid candidate depth (6) is below the catalog size, so the matched set is
    lexical matches plus a few dense candidates."""
    rows = shop_rows()
    catalog = demo_catalog(tmp_path_factory.mktemp("facets-shop"), rows)
    path = tmp_path_factory.mktemp("facets-index") / "index"
    vitrina.Index.build(catalog, path, text_fields=["title"], image_field=None, config=CONFIG,
                        text_model=str(tiny_bert_dir), image_model="none")
    return path, rows


@pytest.fixture(scope="module")
def shop(shop_path) -> tuple[vitrina.Index, list[dict]]:
    return vitrina.Index.open(shop_path[0], CONFIG), shop_path[1]


def matched_ids(index: vitrina.Index, query: str, mode: str | None = None) -> list[str]:
    """The matched set, read from the session's retrievers (all lexical matches, dense at the candidate depth;
    in hybrid mode only the dense candidates at or above the relevance floor, engine.query.calibration)."""
    from vitrina.engine.query.calibration import calibration_of

    session = index._session
    floor = calibration_of(session, "text").floor if (mode or session.default_mode()) == "hybrid" else None
    return [session.products.ids[r] for r in session.matched([query], mode=mode, dense_floor=floor)[0][1]]


@pytest.mark.parametrize("mode", ["hybrid", "lexical", "dense"])
@pytest.mark.parametrize("query", QUERIES)
def test_facet_counts_equal_a_brute_force_count_over_the_matched_set(shop, query, mode) -> None:
    index, rows = shop
    by_id = {r["id"]: r for r in rows}
    hits = index.search(query, 3, mode=mode, facets=["articleType", "baseColour"])
    ids = matched_ids(index, query, mode)
    assert len(set(ids)) == len(ids) and hits.total == len(ids)
    for column in ("articleType", "baseColour"):
        expected = Counter(by_id[i][column] for i in ids if by_id[i][column])
        assert hits.facets[column] == dict(expected)
        counts = list(hits.facets[column].values())
        assert counts == sorted(counts, reverse=True)  # most frequent first
    prices = [float(by_id[i]["price"]) for i in ids if by_id[i]["price"]]
    assert hits.price_range == ((min(prices), max(prices)) if prices else None)


def test_the_matched_set_is_all_lexical_matches_plus_the_dense_candidates(shop) -> None:
    from vitrina.engine.query.calibration import calibration_of

    index, _ = shop
    lexical = {h.id for h in index.search("watch", MAX_K, mode="lexical")}
    floor = calibration_of(index._session, "text").floor  # dense candidates below the relevance floor do not count
    dense = [h.id for h in index.search("watch", 6, mode="dense") if h.score >= floor]
    assert set(matched_ids(index, "watch")) == lexical | set(dense)
    assert index.search("watch", 3, facets=["articleType"]).total == len(lexical | set(dense))


def test_facets_respect_the_filters(shop) -> None:
    index, rows = shop
    hits = index.search("black watch", 5, facets=["articleType"], where={"articleType": "Watches"})
    assert set(hits.facets["articleType"]) == {"Watches"}
    assert all(h.product["articleType"] == "Watches" for h in hits)


def test_without_facets_the_answer_is_unchanged(shop) -> None:
    index, _ = shop
    plain = index.search("black watch", 5)
    faceted = index.search("black watch", 5, facets=["articleType"])
    assert plain.facets is None and plain.total is None
    assert [(h.id, h.score) for h in plain] == [(h.id, h.score) for h in faceted]


@pytest.mark.parametrize("mode", ["hybrid", "lexical", "dense"])
@pytest.mark.parametrize("sort", ["relevance", "price_asc", "price_desc"])
def test_pages_concatenate_to_the_unpaged_list(shop, sort, mode) -> None:
    index, _ = shop
    whole = index.search("black watch", 6, sort=sort, mode=mode)  # within the candidate depth
    pages = [index.search("black watch", 2, sort=sort, mode=mode, offset=offset) for offset in (0, 2, 4)]
    assert [(h.id, h.score) for page in pages for h in page] == [(h.id, h.score) for h in whole]
    assert index.search("black watch", 5, sort=sort, mode=mode, offset=10_000 - 5) == []


@pytest.mark.parametrize("sort", ["price_asc", "price_desc"])
def test_a_price_sort_orders_the_matched_set_by_price(shop, sort) -> None:
    index, rows = shop
    by_id = {r["id"]: r for r in rows}
    ids = matched_ids(index, "black watch")
    hits = index.search("black watch", MAX_K, sort=sort)
    assert sorted(h.id for h in hits) == sorted(ids)
    prices = [float(h.product["price"]) if by_id[h.id]["price"] else None for h in hits]
    known = [p for p in prices if p is not None]
    assert prices == known + [None] * (len(prices) - len(known))  # no price: last
    assert known == sorted(known, reverse=sort == "price_desc")


def test_hostile_values_are_clear_errors(shop) -> None:
    index, _ = shop
    with pytest.raises(vitrina.QueryError, match="no column 'colour' to count in facets"):
        index.search("watch", facets=["colour"])
    with pytest.raises(vitrina.QueryError, match="unknown sort 'cheapest'"):
        index.search("watch", sort="cheapest")
    with pytest.raises(vitrina.QueryError, match="offset"):
        index.search("watch", offset=-1)
    with pytest.raises(vitrina.QueryError, match="at most 10000"):
        index.search("watch", 10, offset=MAX_K)
    with pytest.raises(vitrina.QueryError, match="at most 20"):
        index.search("watch", facets=[f"c{i}" for i in range(21)])


def test_cli_facets_sort_and_offset_match_python(shop_path) -> None:
    path, _ = shop_path
    index = vitrina.Index.open(path, vitrina.VitrinaConfig(progress=False))  # the CLI's default config
    code, out, err = run_cli("search", path, "black watch", "-k", "3", "--facets", "articleType,baseColour",
                             "--sort", "price_asc", "--offset", "2", "--json")
    assert code == 0, err
    record = json.loads(out)
    hits = index.search("black watch", 3, facets=["articleType", "baseColour"], sort="price_asc", offset=2)
    assert [r["id"] for r in record["results"]] == [h.id for h in hits]
    assert record["facets"] == hits.facets and record["total"] == hits.total
    assert record["price"] == {"min": hits.price_range[0], "max": hits.price_range[1]}
    code, table, err = run_cli("search", path, "black watch", "-k", "3", "--facets", "articleType", "--offset", "2")
    assert code == 0, err
    assert "Facets over" in table and "articleType" in table and "\n│ 3 " in table.replace("┃", "│")


def test_cli_output_without_the_new_flags_has_no_new_keys(shop_path) -> None:
    code, out, _ = run_cli("search", shop_path[0], "black watch", "-k", "3", "--json")
    assert code == 0 and set(json.loads(out)) == {"query", "results"}


@pytest.mark.parametrize("flags, message", [
    (("--facets", "colour"), "no column 'colour'"),
    (("--facets", "articleType,,brand"), "--facets"),
    (("--sort", "cheapest"), "invalid choice"),
    (("--offset", "-3"), "offset must be"),
    (("--offset", "9995", "-k", "10"), "at most 10000"),
])
def test_cli_hostile_values_are_clear_errors(shop_path, flags, message) -> None:
    code, out, err = run_cli("search", shop_path[0], "watch", *flags)
    assert code != 0 and message in err and "Traceback" not in err


@pytest.fixture(scope="module")
def client(shop_path):
    from tests.serving_util import ready_client

    c = ready_client(shop_path[0])
    yield c
    c.__exit__(None, None, None)


def test_http_facets_sort_and_offset_match_python(client, shop_path) -> None:
    index = vitrina.Index.open(shop_path[0], vitrina.VitrinaConfig(progress=False))  # the server's default config
    params = {"q": "black watch", "k": 3, "facets": ["articleType", "baseColour"], "sort": "price_desc", "offset": 1}
    response = client.get("/search", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    hits = index.search("black watch", 3, facets=["articleType", "baseColour"], sort="price_desc", offset=1)
    assert [r["id"] for r in body["results"]] == [h.id for h in hits]
    assert body["facets"] == hits.facets and list(body["facets"]["articleType"]) == list(hits.facets["articleType"])
    assert body["price"] == {"min": hits.price_range[0], "max": hits.price_range[1]} and body["total"] == hits.total


def test_a_comma_separated_facets_value_names_several_columns(client, shop_path) -> None:
    repeated = client.get("/search", params={"q": "black watch", "facets": ["articleType", "baseColour"]}).json()
    commas = client.get("/search", params={"q": "black watch", "facets": "articleType, baseColour"}).json()
    assert commas["facets"] == repeated["facets"] and set(commas["facets"]) == {"articleType", "baseColour"}
    index = vitrina.Index.open(shop_path[0], vitrina.VitrinaConfig(progress=False))  # the server's default config
    assert index.search("black watch", facets="articleType,baseColour").facets == repeated["facets"]
    bad = client.get("/search", params={"q": "black watch", "facets": "articleType,colour"})
    assert bad.status_code == 422 and "'colour'" in bad.text


def test_http_answers_without_facets_are_unchanged(client) -> None:
    plain = client.get("/search", params={"q": "black watch", "k": 4})
    assert set(plain.json()) == {"results", "index_version"}
    explicit = client.get("/search", params={"q": "black watch", "k": 4, "sort": "relevance", "offset": 0})
    assert explicit.content == plain.content
    paged = [client.get("/search", params={"q": "black watch", "k": 2, "offset": o}).json()["results"] for o in (0, 2)]
    assert paged[0] + paged[1] == plain.json()["results"]


@pytest.mark.parametrize("params, message", [
    ({"facets": "colour"}, "no column 'colour'"),
    ({"facets": ""}, "facets"),
    ({"facets": ["articleType"] * 21}, "facets"),
    ({"sort": "cheapest"}, "sort"),
    ({"offset": -1}, "offset"),
    ({"offset": 10 ** 30}, "offset"),
    ({"offset": "abc"}, "offset"),
    ({"offset": 9_999, "k": 5}, "at most 10000"),
])
def test_http_hostile_values_get_a_422_naming_them(client, params, message) -> None:
    response = client.get("/search", params={"q": "watch", **params})
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_an_unknown_value_of_a_text_column_is_an_error_naming_it(shop, shop_path, client) -> None:
    index, _ = shop
    with pytest.raises(vitrina.QueryError, match=r"no product has articleType 'Wallts'; did you mean 'Wallets'"):
        index.search("black", where={"articleType": ["Watches", "Wallts"]})
    assert index.search("black", 50, where={"articleType": "wallets"})  # case-insensitive, as before
    code, _, err = run_cli("search", shop_path[0], "black", "--where", "baseColour=Blak")
    assert code != 0 and "--where: no product has baseColour 'Blak'" in err
    response = client.get("/search", params={"q": "black", "where": "articleType=Wallts"})
    assert response.status_code == 422 and "'Wallts'" in response.json()["detail"]
