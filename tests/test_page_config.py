"""GET /page/config: the search page's display fields, facets and currency, found from the catalog's columns
or set by `vitrina serve --display-fields/--facet-fields/--currency` (ServingConfig)."""

from __future__ import annotations

import pytest

from vitrina.engine.build.indexing import build_index
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.catalog import CatalogConfig
from vitrina.serving.config import ServingConfig, ServingConfigError
from tests.helpers import run_cli, write_csv
from tests.serving_util import KEY, ready_client

TYPES = ("Trousers", "Sweater", "Dress")
COLOURS = (("9", "Black"), ("10", "White"), ("73", "Dark Blue"), ("13", "Beige"))


@pytest.fixture(scope="module")
def hm_index(tmp_path_factory):
    """An H&M-shaped text-only catalog: prod_name, type, colour code and name, codes, descriptions, a price."""
    root = tmp_path_factory.mktemp("hm-shaped")
    rows = []
    for i in range(40):
        code, colour = COLOURS[i % 4]
        rows.append({"article_id": f"0{100000 + i}001", "product_code": str(100000 + i // 4),
                     "prod_name": f"{colour} {TYPES[i % 3].lower()} {i}", "product_type_name": TYPES[i % 3],
                     "colour_group_code": code, "colour_group_name": colour,
                     "index_group_name": ("Ladieswear", "Menswear")[i % 2],
                     "detail_desc": f"A {colour.lower()} {TYPES[i % 3].lower()} in soft cotton, style {i}.",
                     "price": f"{10 + i}.99"})
    catalog = write_csv(root / "articles.csv", rows)
    config = VitrinaConfig(progress=False, image_model=None,
                           catalog=CatalogConfig(id_field="article_id", text_fields=("prod_name", "detail_desc")))
    build_index(catalog, root / "idx", config)
    return root / "idx"


def page_config(index_dir, **settings) -> dict:
    client = ready_client(index_dir, ServingConfig(api_key=KEY, **settings))
    try:
        answer = client.get("/page/config")
        assert answer.status_code == 200, answer.text
        return answer.json()
    finally:
        client.__exit__(None, None, None)


def test_defaults_come_from_the_catalog_columns(hm_index):
    config = page_config(hm_index)
    assert config["display_fields"] == ["prod_name", "colour_group_name"]  # the title column, then the colour
    # the category and colour columns, then other text columns whose values repeat; never codes, names or texts
    assert config["facet_fields"] == ["product_type_name", "colour_group_name", "index_group_name"]
    assert config["currency"] == "USD" and config["price_field"] == "price"
    assert config["has_images"] is False and config["image_field"] is None and config["similar_space"] == "text"
    assert config["max_k"] == 100 and config["index_version"]


def test_configured_fields_and_currency_are_served(hm_index):
    config = page_config(hm_index, display_fields=("detail_desc", "prod_name"), facet_fields=("index_group_name",),
                         currency="SEK")
    assert config["display_fields"] == ["detail_desc", "prod_name"]
    assert config["facet_fields"] == ["index_group_name"] and config["currency"] == "SEK"
    assert page_config(hm_index, facet_fields=())["facet_fields"] == []


def test_the_similar_space_the_page_asks_for_answers(hm_index):
    client = ready_client(hm_index)
    try:
        space = client.get("/page/config").json()["similar_space"]
        answer = client.get("/products/0100000001/similar", params={"space": space, "k": 5})
        assert answer.status_code == 200 and len(answer.json()["results"]) == 5  # "More like this" by text
    finally:
        client.__exit__(None, None, None)


def test_a_currency_that_is_no_iso_code_is_refused():
    for bad in ("euro", "EU", "€", "usd"):
        with pytest.raises(ServingConfigError, match="ISO 4217"):
            ServingConfig(currency=bad)


def test_serve_flags_name_a_column_the_catalog_lacks_and_a_bad_currency(hm_index):
    code, _, err = run_cli("serve", hm_index, "--display-fields", "prod_name,title")
    assert code != 0 and "--display-fields" in err and "'title'" in err and "prod_name" in err
    code, _, err = run_cli("serve", hm_index, "--facet-fields", "colour")
    assert code != 0 and "--facet-fields" in err and "'colour'" in err
    code, _, err = run_cli("serve", hm_index, "--currency", "euro")
    assert code != 0 and "--currency" in err and "EURO" in err


def test_serve_flags_make_the_page_settings():
    from vitrina.cli.main import build_parser
    from vitrina.cli.serve import serve_configs

    def serving(*flags):
        return serve_configs(build_parser().parse_args(["serve", "DIR", *flags]))[1]

    assert serving().display_fields == () and serving().facet_fields is None and serving().currency == "USD"
    chosen = serving("--display-fields", "prod_name, colour_group_name", "--facet-fields", "a,b", "--currency", "eur")
    assert chosen.display_fields == ("prod_name", "colour_group_name") and chosen.facet_fields == ("a", "b")
    assert chosen.currency == "EUR"
    assert serving("--facet-fields", "none").facet_fields == ()
