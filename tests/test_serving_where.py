"""`where` on /search, /search/image and /products/{id}/similar: the same filters as Python, inside retrieval;
hostile values get a 422 JSON answer naming the problem, never a 500."""

from __future__ import annotations

import re

import pytest

from vitrina.engine.build.indexing import build_index
from vitrina.engine.config import VitrinaConfig
from tests.helpers import DEMO_DATA
from tests.serving_util import ready_client, shop_catalog

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("where-http")
    catalog, rows = shop_catalog(root)
    build_index(catalog, root / "idx", VitrinaConfig(progress=False))
    client = ready_client(root / "idx")
    yield client, rows
    client.__exit__(None, None, None)


def ids(body) -> set[str]:
    return {hit["id"] for hit in body["results"]}


@pytest.mark.parametrize("mode", ["dense", "hybrid", "lexical"])
def test_search_where_keeps_matching_products_like_the_python_api(shop, mode):
    client, rows = shop
    params = {"q": "black leather", "k": 60, "mode": mode, "where": ["articleType=Wallets", "articleType=watches",
                                                                      "baseColour=Black", "year>=2011"]}
    body = client.get("/search", params=params).json()
    expected = {r["id"] for r in rows if r["articleType"] in ("Wallets", "Watches") and r["baseColour"] == "Black"
                and int(r["year"]) >= 2011}
    assert ids(body) <= expected and expected
    if mode != "lexical":
        assert ids(body) == expected
    session = client.app.state.holder.current.session
    python = session.search("black leather", k=60, mode=mode, where={"articleType": ["Wallets", "watches"],
                                                                     "baseColour": "Black", "year": (2011, None)})[0]
    assert [h["id"] for h in body["results"]] == [h.id for h in python]
    assert [h["score"] for h in body["results"]] == [round(h.score, 6) for h in python]


def test_where_combines_with_price_and_category_and_reaches_similar_and_image_search(shop):
    client, rows = shop
    priced = client.get("/search", params={"q": "shoes", "k": 60, "price_min": 20, "where": "price<=50",
                                           "category": "Casual Shoes"}).json()
    expected = {r["id"] for r in rows if 20 <= float(r["price"]) <= 50 and r["articleType"] == "Casual Shoes"}
    assert ids(priced) == expected and expected
    similar = client.get(f"/products/{rows[0]['id']}/similar", params={"k": 60, "where": "articleType=Wallets"}).json()
    assert ids(similar) == {r["id"] for r in rows if r["articleType"] == "Wallets"} - {rows[0]["id"]}
    photo = (DEMO_DATA / rows[0]["image"]).read_bytes()
    found = client.post("/search/image", params={"k": 60, "where": ["baseColour=Black", "baseColour=White"]},
                        files={"file": ("a.jpg", photo, "image/jpeg")}).json()
    assert ids(found) == {r["id"] for r in rows if r["baseColour"] in ("Black", "White")}


@pytest.mark.parametrize("where, problem", [
    (["colour=Black"], r"no column 'colour' to filter on \(columns: .*baseColour"),
    (["articleType>=3"], "'articleType' does not hold numbers"),
    (["articleType"], r"'articleType' is not FIELD=VALUE \(or FIELD:VALUE\), FIELD>=NUMBER or FIELD<=NUMBER"),
    (["year>=soon"], "'soon' is not a number"),
    (["year>=1e999"], "not a finite number"),
    (["year=2012", "year<=2013"], "takes values .* or a range"),
    ([f"c{i}=x" for i in range(1000)], "at most 100 items"),
    ([f"c{i}=x" for i in range(30)], "names 30 columns; give at most 20"),
    (["articleType=" + "x" * 20_000], "at most 512 characters"),
    (["articleType=" + "x" * 400], "text of 1 to 256 characters"),
    (["\x00=\x00"], "no column"),
])
def test_hostile_where_values_get_422_json_naming_the_problem(shop, where, problem):
    client, rows = shop
    for method, path, extra in [("GET", "/search", {"q": "shoes"}), ("GET", f"/products/{rows[0]['id']}/similar", {}),
                                ("POST", "/search/image", {})]:
        files = {"file": ("a.jpg", (DEMO_DATA / rows[0]["image"]).read_bytes(), "image/jpeg")} if method == "POST" else None
        response = client.request(method, path, params={**extra, "where": where}, files=files)
        assert response.status_code == 422, (path, response.text)
        assert response.headers["content-type"] == "application/json"
        assert re.search(problem, response.json()["detail"]), (path, response.json()["detail"])


def test_field_colon_value_is_the_same_filter_as_field_equals_value(shop):
    client, rows = shop
    colon = client.get("/search", params={"q": "black leather", "k": 60, "where": ["articleType:Wallets",
                                                                                   "baseColour: Black"]}).json()
    equals = client.get("/search", params={"q": "black leather", "k": 60, "where": ["articleType=Wallets",
                                                                                    "baseColour=Black"]}).json()
    expected = {r["id"] for r in rows if r["articleType"] == "Wallets" and r["baseColour"] == "Black"}
    assert colon["results"] == equals["results"] and ids(colon) == expected and expected
    bad = client.get("/search", params={"q": "shoes", "where": "articleType:"})
    assert bad.status_code == 422 and "articleType:" in bad.text


def test_a_misspelt_category_or_brand_is_a_422_naming_it_with_the_closest_values(shop):
    client, rows = shop
    answer = client.get("/search", params={"q": "shoes", "category": "Walets"})
    assert answer.status_code == 422 and "Walets" in answer.text and "Wallets" in answer.text
    assert client.get("/search", params={"q": "shoes", "category": "wallets"}).status_code == 200
