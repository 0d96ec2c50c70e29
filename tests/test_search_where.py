"""`where` and `price` filters through SearchSession: inside retrieval for text, image and product searches."""

from __future__ import annotations

import pytest
from PIL import Image

from vitrina.engine.build.indexing import build_index
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.errors import QueryError
from vitrina.engine.query.search import SearchSession
from tests.helpers import DEMO_DATA
from tests.serving_util import shop_catalog

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """(session, rows): 60 shop products with brands and prices, indexed with the packaged models."""
    root = tmp_path_factory.mktemp("where")
    catalog, rows = shop_catalog(root)
    build_index(catalog, root / "idx", VitrinaConfig(progress=False))
    return SearchSession(root / "idx", VitrinaConfig(progress=False)), rows


def ids_where(rows, keep) -> set[str]:
    return {r["id"] for r in rows if keep(r)}


@pytest.mark.parametrize("mode", ["dense", "hybrid", "lexical"])
def test_where_and_price_keep_only_matching_products_and_fill_k_from_them(shop, mode):
    session, rows = shop
    where = {"articleType": ["watches", "Wallets"], "baseColour": "Black"}
    expected = ids_where(rows, lambda r: r["articleType"] in ("Watches", "Wallets") and r["baseColour"] == "Black")
    hits = session.search("black leather", k=60, mode=mode, where=where)[0]
    assert {h.id for h in hits} <= expected and expected
    if mode != "lexical":  # every matching product, none other
        assert {h.id for h in hits} == expected
    priced = session.search(["shoes", "watch"], k=60, mode=mode, where={"year": (2011, None)}, price=(20, 50))
    assert len(priced) == 2
    in_range = ids_where(rows, lambda r: int(r["year"]) >= 2011 and 20 <= float(r["price"]) <= 50)
    for hits in priced:
        assert {h.id for h in hits} <= in_range and hits
        assert all(h.product is h.metadata and 20 <= h.product["price"] <= 50 for h in hits)


def test_a_text_is_one_query_and_filters_change_nothing_when_empty(shop):
    session, _ = shop
    one = session.search("leather wallet", k=5)
    assert len(one) == 1 and len(one[0]) == 5
    assert one == session.search(["leather wallet"], k=5, where={}, price=None)


def test_similar_products_and_images_take_the_same_filters(shop):
    session, rows = shop
    wallets = ids_where(rows, lambda r: r["articleType"] == "Wallets")
    hits = session.similar_to_product(rows[0]["id"], k=60, where={"articleType": "Wallets"})
    assert {h.id for h in hits} == wallets - {rows[0]["id"]}
    cheap = ids_where(rows, lambda r: float(r["price"]) <= 30)
    photo = DEMO_DATA / rows[0]["image"]
    by_path, by_image = (session.similar_to_images([query], k=60, price=(None, 30))[0]
                         for query in (str(photo), Image.open(photo)))
    assert {h.id for h in by_path} == cheap == {h.id for h in by_image}


@pytest.mark.parametrize("where, price, problem", [
    ({"colour": "Black"}, None, r"no column 'colour' to filter on \(columns: .*baseColour"),
    ({"articleType": (1, 2)}, None, "'articleType' does not hold numbers"),
    ({f"c{i}": "x" for i in range(1000)}, None, "names 1000 columns"),
    ({"articleType": ["x"] * 5000}, None, "give 1 to 100 values"),
    ({"articleType": "x" * 1_000_000}, None, "text of 1 to 256 characters"),
    (None, ("cheap", None), "price: 'cheap' is not a number"),
])
def test_bad_filters_are_query_errors_naming_the_problem(shop, where, price, problem):
    session, rows = shop
    with pytest.raises(QueryError, match=problem):
        session.search("shoes", where=where, price=price)
    with pytest.raises(QueryError, match=problem):
        session.similar_to_product(rows[0]["id"], where=where, price=price)
