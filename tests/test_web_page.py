"""The search page end to end in headless Chromium (Debian's, driven by Playwright), over real servers of two
small indexes built once for the module: a shop with photos, brands, prices (served in euros), a model code
as its group field and a merchandising rule, and a text-only catalog. Cards, facets with counts, the price
slider, sorting, paging, "did you mean", variant swatches, a pinned product, "no results" with suggested
words, the state in the URL (back button, shared links), photo upload, and screenshots at 1280 and 375 px
whose layout (bounding boxes) and pixels are checked. Nothing is faked: the page is checked against the
API's own answers."""

from __future__ import annotations

import io
import math
import shutil
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

import vitrina
from vitrina.engine.build.indexing import build_index
from vitrina.engine.config import VitrinaConfig
from vitrina.serving.config import ServingConfig
from tests.helpers import DEMO_DATA, write_csv
from tests.serving_util import KEY, running_server, shop_catalog

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [  # no sandbox as root; no calls home on a machine without internet
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
WIDE, NARROW = {"width": 1280, "height": 900}, {"width": 375, "height": 812}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} not installed (apt-get install chromium; .ci/run does)"),
]


# Products sold in several colours share a model code (the index's group field): one card each, with swatches.
MODELS = {"14899": "UCB-SOLID-WALLET", "14903": "UCB-SOLID-WALLET", "14904": "UCB-SOLID-WALLET",
          "17088": "LP-FLOWER-WALLET", "17100": "LP-FLOWER-WALLET", "14798": "UCB-SOLID-BAG", "14880": "UCB-SOLID-BAG"}
PINNED = "15451"  # a leather handbag, pinned first for "polo tshirt" by a merchandising rule
RULES = {"rules": [{"id": "polo-promo", "query": "polo tshirt", "pin": [{"product": PINNED, "position": 1}]}]}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A served shop of 60 demo products with photos, a brand, a price and a model code (the group field:
    the colours of a few wallets and bags), and one merchandising rule; prices shown in euros."""
    root = tmp_path_factory.mktemp("shop")
    _, rows = shop_catalog(root)
    for r in rows:
        r["model"] = MODELS.get(r["id"], f"M-{r['id']}")
    catalog = write_csv(root / "products.csv", rows)
    vitrina.Index.build(catalog, root / "idx", versioned=False, group_field="model", rules=RULES,
                        config=VitrinaConfig(progress=False))
    with running_server(root / "idx", ServingConfig(api_key=KEY, currency="EUR")) as base:
        yield SimpleNamespace(base=base, rows=rows, by_id={r["id"]: r for r in rows}, root=root)


@pytest.fixture(scope="module")
def text_shop(tmp_path_factory):
    """The same kind of shop without an image column (cards are text only)."""
    root = tmp_path_factory.mktemp("text-shop")
    _, rows = shop_catalog(root / "with-images", per_type=5)
    rows = [{k: v for k, v in r.items() if k != "image"} for r in rows]
    catalog = write_csv(root / "products.csv", rows)
    build_index(catalog, root / "idx", VitrinaConfig(progress=False))
    with running_server(root / "idx", ServingConfig(api_key=KEY)) as base:
        yield SimpleNamespace(base=base, rows=rows, by_id={r["id"]: r for r in rows}, root=root)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where the screenshots go (kept after the run: look at them)."""
    return tmp_path_factory.mktemp("shots")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser):
    """open_page(url, viewport) -> a page at `url`; script errors on any page fail the test."""
    contexts, errors = [], []

    def opener(url: str, viewport: dict = WIDE):
        context = browser.new_context(viewport=viewport, locale="en-US")
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_selector("body[data-ready]", state="attached")  # the page has read /page/config
        return page

    yield opener
    for context in contexts:
        context.close()
    assert not errors, errors


def api(shop, **params) -> dict:
    """The API's own answer to a search, to compare the page with."""
    answer = httpx.get(f"{shop.base}/search", params=params, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def shown_ids(page) -> list[str]:
    return page.locator("#results .card").evaluate_all("cards => cards.map(c => c.dataset.id)")


def url_state(page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def search(page, query: str) -> None:
    page.fill("#query", query)
    page.press("#query", "Enter")
    page.wait_for_function("q => document.querySelector('#status').textContent.includes('for “' + q + '”')", arg=query)


def wait_status(page, text: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#status")).to_contain_text(text)


def screenshot(page, path: Path) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    return np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB"), dtype=np.float32)


def status_of(answer: dict, query: str, page: int = 1) -> str:
    """The status line the page shows for an API answer with `total`: a relevance ranking that runs past the
    matched set (what `total` and the facets count) says how many close matches there are instead."""
    first = (page - 1) * 24 + 1
    last = first + len(answer["results"]) - 1
    if last > answer["total"] == 0:
        return f"{first}–{last} results for “{query}” (no close matches, only related products)"
    if last > answer["total"]:
        return f"{first}–{last} results for “{query}” ({answer['total']} close matches, then related products)"
    return f"{first}–{last} of {answer['total']} results for “{query}”"


def boxes(page, selector: str) -> list[dict]:
    return [page.locator(selector).nth(i).bounding_box() for i in range(page.locator(selector).count())]


def test_config_names_the_display_fields_currency_and_facets(shop, text_shop):
    config = httpx.get(f"{shop.base}/page/config").json()
    assert config["display_fields"] == ["title", "brand", "baseColour"]
    assert config["currency"] == "EUR"
    assert config["facet_fields"][:3] == ["articleType", "brand", "baseColour"] and len(config["facet_fields"]) == 4
    assert config["price_field"] == "price" and config["has_images"] and config["similar_space"] == "image"
    text = httpx.get(f"{text_shop.base}/page/config").json()
    assert not text["has_images"] and text["image_field"] is None and text["similar_space"] == "text"
    assert text["currency"] == "USD"


def test_cards_show_the_display_fields_and_prices_in_the_currency_and_scores_only_in_debug(shop, open_page, shots):
    page = open_page(shop.base + "/")
    search(page, "leather wallet")
    cards = page.locator("#results .card")
    assert cards.count() == 24
    ids = shown_ids(page)
    assert ids == [h["id"] for h in api(shop, q="leather wallet", k=24)["results"]]
    first = shop.by_id[ids[0]]
    assert cards.first.locator(".title").inner_text() == first["title"]
    assert cards.first.locator(".meta").inner_text() == f"{first['brand']} · {first['baseColour']}"
    assert cards.first.locator(".price").inner_text() == f"€{float(first['price']):.2f}"
    assert "score" not in page.locator("#results").inner_text()
    assert sum("Wallet" in t for t in cards.locator(".title").all_inner_texts()[:5]) >= 4

    page.check("#debug")  # the debug toggle shows scores, and lives in the URL
    page.wait_for_function("document.querySelectorAll('#results .card .debug').length === 24")
    assert cards.first.locator(".debug").inner_text().startswith("score ")
    assert url_state(page)["debug"] == ["1"]

    page.evaluate("window.scrollTo(0, 0)")  # the debug box is in the footer
    page.wait_for_function("[...document.querySelectorAll('#results .photo img')].slice(0, 8)"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    image = screenshot(page, shots / "cards-1280.png")
    assert image.shape == (900, 1280, 3)
    photos = boxes(page, "#results .card .photo")
    in_first_row = [b for b in photos if abs(b["y"] - photos[0]["y"]) < 2]
    assert len(in_first_row) >= 4, "at 1280 px a row holds four cards or more"
    for box in in_first_row:  # every photo box of the first row shows a product photo, not an empty box
        x, y = int(box["x"]), int(box["y"])
        crop = image[y + 5:min(y + int(box["height"]) - 5, 900), x + 5:x + int(box["width"]) - 5]
        assert crop.size and crop.std() > 20, f"the photo box at x={x} looks blank"
        assert (crop.min(axis=2) < 200).mean() > 0.05, f"the photo box at x={x} shows almost nothing"


def test_facet_checkboxes_count_filter_and_keep_their_state_in_the_url(shop, open_page, shots):
    page = open_page(shop.base + "/")
    search(page, "shoes")
    expected = api(shop, q="shoes", k=24, facets=["articleType", "brand", "baseColour", "gender"])
    group = page.locator('.facet[data-field="articleType"]')
    counts = dict(zip(group.locator(".name").all_inner_texts(), map(int, group.locator(".count").all_inner_texts())))
    assert counts == expected["facets"]["articleType"]
    wait_status(page, status_of(expected, "shoes"))

    group.locator('input[value="Sports Shoes"]').check()
    page.wait_for_url("**where=articleType%3DSports+Shoes**")
    wait_status(page, f"of {counts['Sports Shoes']} results")
    assert {shop.by_id[i]["articleType"] for i in shown_ids(page)} == {"Sports Shoes"}
    # the other values of the checked column still count (as if it were unchecked), so one can add them
    group = page.locator('.facet[data-field="articleType"]')
    assert int(group.locator('label:has(input[value="Casual Shoes"]) .count').inner_text()) == counts["Casual Shoes"]
    group.locator('input[value="Casual Shoes"]').check()  # two values of one column: either
    wait_status(page, f"of {counts['Sports Shoes'] + counts['Casual Shoes']} results")
    assert {shop.by_id[i]["articleType"] for i in shown_ids(page)} == {"Sports Shoes", "Casual Shoes"}
    assert url_state(page)["where"] == ["articleType=Sports Shoes", "articleType=Casual Shoes"]
    two_types = shown_ids(page)

    page.go_back()  # one filter again
    wait_status(page, f"of {counts['Sports Shoes']} results")
    assert page.locator('.facet[data-field="articleType"] input[value="Casual Shoes"]').is_checked() is False
    page.go_back()  # no filter
    wait_status(page, status_of(expected, "shoes"))
    assert not url_state(page).get("where")
    page.go_forward()
    page.go_forward()
    wait_status(page, f"of {counts['Sports Shoes'] + counts['Casual Shoes']} results")

    shared = open_page(page.url)  # a shared link opens the same state
    wait_status(shared, f"of {counts['Sports Shoes'] + counts['Casual Shoes']} results")
    assert shown_ids(shared) == two_types
    assert shared.locator("#query").input_value() == "shoes"
    assert shared.locator('.facet[data-field="articleType"] input:checked').count() == 2
    screenshot(shared, shots / "facets-1280.png")


def test_sort_menu_price_slider_and_pages(shop, open_page):
    page = open_page(shop.base + "/")
    search(page, "shoes")
    prices = lambda: [float(t.replace("€", "").replace(",", "")) for t in page.locator("#results .price").all_inner_texts()]  # noqa: E731

    page.select_option("#sort", "price_asc")
    page.wait_for_url("**sort=price_asc**")
    by_price = api(shop, q="shoes", k=24, sort="price_asc", facets=["brand"])  # the matched set, by price
    assert 0 < len(by_price["results"]) == by_price["total"] <= 24
    wait_status(page, status_of(by_price, "shoes"))
    assert prices() == sorted(prices()) and len(prices()) == by_price["total"]
    assert shown_ids(page) == [h["id"] for h in by_price["results"]]
    assert page.locator("#pager").is_hidden()  # one page holds them all
    page.select_option("#sort", "price_desc")
    page.wait_for_url("**sort=price_desc**")
    page.wait_for_function("id => document.querySelector('#results .card').dataset.id === id",
                           arg=api(shop, q="shoes", k=24, sort="price_desc")["results"][0]["id"])
    assert prices() == sorted(prices(), reverse=True)

    whole = api(shop, q="shoes", k=1, facets=["brand"])
    low, high = math.floor(whole["price"]["min"]), math.ceil(whole["price"]["max"])
    assert page.get_attribute("#price-min", "min") == str(low) and page.get_attribute("#price-max", "max") == str(high)
    cap = low + (high - low) // 2
    page.eval_on_selector("#price-max", "(input, v) => { input.value = v; input.dispatchEvent(new Event('input'));"
                          " input.dispatchEvent(new Event('change')); }", cap)
    page.wait_for_url(f"**price_max={cap}**")
    expected = api(shop, q="shoes", k=24, sort="price_desc", price_max=cap, facets=["brand"])
    wait_status(page, f"of {expected['total']} results")
    assert max(prices()) <= cap and shown_ids(page) == [h["id"] for h in expected["results"]]
    assert page.locator("#price-label").inner_text() == f"€{low:.2f} – €{cap:.2f}"
    assert page.get_attribute("#price-max", "max") == str(high)  # the slider keeps the whole range

    # pages: Next, the page in the URL, Back. The relevance ranking of "shoes" runs past its matched set (the
    # shoes, a few close others) into related products, so the page counts pages while they are full.
    page.goto(shop.base + "/?q=shoes")
    ranked = api(shop, q="shoes", k=24, facets=["brand"])
    assert len(ranked["results"]) == 24 > ranked["total"]
    wait_status(page, status_of(ranked, "shoes"))
    assert page.locator("#page-label").inner_text() == "Page 1" and page.locator("#next-page").is_enabled()
    first = shown_ids(page)
    page.click("#next-page")
    page.wait_for_url("**page=2**")
    second_page = api(shop, q="shoes", k=24, offset=24, facets=["brand"])
    wait_status(page, status_of(second_page, "shoes", page=2))
    second = shown_ids(page)
    assert second == [h["id"] for h in second_page["results"]]
    assert not set(first) & set(second)
    page.go_back()
    wait_status(page, status_of(ranked, "shoes"))
    assert shown_ids(page) == first and page.locator("#prev-page").is_disabled()

    page.goto(shop.base + "/?q=men&sort=price_asc")  # a price sort pages through the matched set: pages counted
    men = api(shop, q="men", k=24, sort="price_asc", facets=["brand"])
    assert 24 < men["total"] <= 48
    wait_status(page, f"1–24 of {men['total']} results for “men”")
    assert page.locator("#page-label").inner_text() == "Page 1 of 2" and page.locator("#next-page").is_enabled()
    page.click("#next-page")
    page.wait_for_url("**page=2**")
    wait_status(page, f"25–{men['total']} of {men['total']} results for “men”")
    assert page.locator("#page-label").inner_text() == "Page 2 of 2" and page.locator("#next-page").is_disabled()
    assert shown_ids(page) == [h["id"] for h in api(shop, q="men", k=24, offset=24, sort="price_asc")["results"]]


def test_did_you_mean_and_no_results_with_suggestions(shop, open_page, shots):
    answer = api(shop, q="leather walet", k=24)
    assert answer.get("corrected_query") == "leather wallet"
    page = open_page(shop.base + "/?q=leather+walet")
    note = page.locator("#did-you-mean")
    page.wait_for_selector("#did-you-mean:not([hidden])")
    assert "Showing results for leather wallet" in note.inner_text() and "walet" in note.inner_text()
    note.locator("a").click()
    page.wait_for_url("**q=leather+wallet**")
    wait_status(page, "for “leather wallet”")
    assert page.locator("#did-you-mean").is_hidden()

    # A query no product comes close to falls below the relevance floor: no results, and words to try.
    gibberish = api(shop, q="xyzzyqq blorf", k=24)
    assert gibberish["results"] == [] and len(gibberish["suggestions"]) >= 2
    page.goto(f"{shop.base}/?q=xyzzyqq+blorf&debug=1")
    page.wait_for_selector("#no-results:not([hidden])")
    wait_status(page, "No results for “xyzzyqq blorf”")
    assert page.locator("#results .card").count() == 0 and page.locator("#pager").is_hidden()
    assert page.locator("#no-results p").first.inner_text() == "No products match “xyzzyqq blorf”."
    links = page.locator("#no-results .suggestions a")
    assert links.all_inner_texts() == gibberish["suggestions"]
    word = gibberish["suggestions"][1]
    assert links.nth(1).get_attribute("href") == f"/?q={word}&debug=1"
    links.nth(1).click()
    page.wait_for_url(f"**/?q={word}&debug=1")  # the suggestion searches for that word
    wait_status(page, f"results for “{word}”")
    assert page.locator("#no-results").is_hidden()
    assert shown_ids(page) == [h["id"] for h in api(shop, q=word, k=24)["results"]]
    page.go_back()
    page.wait_for_selector("#no-results:not([hidden])")
    assert links.all_inner_texts() == gibberish["suggestions"]
    narrow = open_page(f"{shop.base}/?q=xyzzyqq+blorf", NARROW)
    narrow.wait_for_selector("#no-results:not([hidden])")
    assert narrow.locator("#no-results .suggestions a").all_inner_texts() == gibberish["suggestions"]
    assert narrow.evaluate("document.documentElement.scrollWidth") <= 375
    assert narrow.locator("#sort-label").is_hidden()  # nothing to sort
    screenshot(narrow, shots / "no-results-375.png")

    # Two filters no product meets together: empty too, and the page offers to drop the filters (a sensible
    # query is above the floor, so the API suggests no words).
    watch_brands = {r["brand"] for r in shop.rows if r["articleType"] == "Watches"}
    brand = next(r["brand"] for r in shop.rows if r["brand"] not in watch_brands)
    empty = api(shop, q="wallet", k=24, where=["articleType=Watches", f"brand={brand}"])
    assert empty["results"] == [] and "suggestions" not in empty
    page.goto(f"{shop.base}/?q=wallet&where=articleType%3DWatches&where=brand%3D{brand}")
    page.wait_for_selector("#no-results:not([hidden])")
    assert page.locator("#results .card").count() == 0
    assert "No products match “wallet” with these filters" in page.locator("#no-results").inner_text()
    assert page.locator("#no-results .suggestions").count() == 0
    page.locator("#no-results button", has_text="Search without filters").click()
    page.wait_for_url("**/?q=wallet")
    wait_status(page, "results for “wallet”")
    assert shown_ids(page) == [h["id"] for h in api(shop, q="wallet", k=24)["results"]]

    # One filter no close match meets: its products are still listed by relevance, as related products.
    watches = api(shop, q="wallet", k=24, where=["articleType=Watches"], facets=["brand"])
    assert watches["total"] == 0 and len(watches["results"]) == 10
    page.goto(f"{shop.base}/?q=wallet&where=articleType%3DWatches")
    wait_status(page, status_of(watches, "wallet"))
    assert "no close matches, only related products" in page.locator("#status").inner_text()
    assert shown_ids(page) == [h["id"] for h in watches["results"]] and page.locator("#pager").is_hidden()


def test_links_with_a_misspelt_filter_or_a_page_past_the_end_say_so_and_recover(shop, open_page):
    page = open_page(shop.base + "/?q=shoes&where=baseColour%3DBlak")
    page.wait_for_selector("#status.error")
    assert "Blak" in page.locator("#status").inner_text() and "Black" in page.locator("#status").inner_text()
    refused = page.locator('.facet[data-field="baseColour"] input[value="Blak"]')
    assert refused.is_checked()
    refused.click()  # not uncheck(): its state check would look for the box again, gone once the answer shows
    page.wait_for_url("**/?q=shoes")
    wait_status(page, status_of(api(shop, q="shoes", k=24, facets=["brand"]), "shoes"))

    page.goto(shop.base + "/?q=shoes&page=9")
    page.wait_for_selector("#no-results:not([hidden])")
    assert "Page 9 is past the last result" in page.locator("#no-results").inner_text()
    page.locator("#no-results a").click()
    page.wait_for_url("**/?q=shoes")
    wait_status(page, status_of(api(shop, q="shoes", k=24, facets=["brand"]), "shoes"))


def test_variant_swatches_show_the_other_members_and_swap_the_card(shop, open_page, shots):
    # the shop is grouped by its model column: a hit's `variants` are the other colours of its model
    answer = {h["id"]: h for h in api(shop, q="leather wallet", k=24)["results"]}
    page = open_page(shop.base + "/")
    search(page, "leather wallet")
    assert shown_ids(page) == list(answer)
    grouped = [i for i in answer if answer[i]["variants"]]
    assert len(grouped) >= 2, "the wallets and bags of one model make groups"
    for hit_id in grouped:
        model = shop.by_id[hit_id]["model"]
        assert sorted([hit_id, *answer[hit_id]["variants"]]) == sorted(r["id"] for r in shop.rows if r["model"] == model)
    plain = page.locator("#results .card").filter(has_not=page.locator(".swatch"))
    assert plain.count() == len(answer) - len(grouped)  # a product of its own model shows no swatches

    first_id = grouped[0]
    others = answer[first_id]["variants"]
    card = page.locator(f'#results .card[data-id="{first_id}"]')
    swatches = card.locator(".swatch")
    assert swatches.evaluate_all("s => s.map(b => b.dataset.id)") == [first_id, *others][:6]
    assert card.locator(".swatches").get_attribute("aria-label") == f"{len(others) + 1} variants"
    page.wait_for_function("els => els.every(i => i.complete && i.naturalWidth > 0)",
                           arg=card.locator(".swatch img").element_handles())
    handle = card.element_handle()  # before the click: the card's id changes with it
    swatches.nth(1).click()
    page.wait_for_function("([card, id]) => card.dataset.id === id", arg=[handle, others[0]])
    card = page.locator(f'#results .card[data-id="{others[0]}"]')
    assert card.locator(".title").inner_text() == shop.by_id[others[0]]["title"]
    assert card.locator(".meta").inner_text() == f"{shop.by_id[others[0]]['brand']} · {shop.by_id[others[0]]['baseColour']}"
    assert card.locator(".photo img").get_attribute("src") == f"/products/{others[0]}/image"
    assert "active" in card.locator(".swatch").nth(1).get_attribute("class")
    assert "active" not in card.locator(".swatch").nth(0).get_attribute("class")
    card.screenshot(path=str(shots / "variants-card.png"))
    screenshot(page, shots / "variants-1280.png")


def test_a_pinned_product_shows_first_and_the_rules_fired_only_in_debug(shop, open_page):
    answer = api(shop, q="polo tshirt", k=24)
    assert answer["results"][0]["id"] == PINNED and answer["rules_fired"] == ["polo-promo"]
    assert shop.by_id[PINNED]["articleType"] == "Handbags"  # not a polo shirt: first only by the rule
    page = open_page(shop.base + "/?q=polo+tshirt")
    wait_status(page, "results for “polo tshirt”")
    assert shown_ids(page) == [h["id"] for h in answer["results"]]
    assert page.locator("#results .card").first.locator(".title").inner_text() == shop.by_id[PINNED]["title"]
    assert "rules fired" not in page.locator("#status").inner_text()

    page.check("#debug")
    page.wait_for_url("**debug=1**")
    wait_status(page, "rules fired: polo-promo")
    assert shown_ids(page)[0] == PINNED
    search(page, "leather wallet")  # no rule fires for another query
    page.wait_for_selector("#results .card .debug")
    assert "rules fired" not in page.locator("#status").inner_text()


def test_at_375_px_two_cards_a_row_no_overflow_and_filters_fold(shop, open_page, shots):
    page = open_page(shop.base + "/?q=watch", NARROW)
    wait_status(page, "results for “watch”")
    page.wait_for_function("[...document.querySelectorAll('#results .photo img')].slice(0, 4)"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    cards = boxes(page, "#results .card")
    assert abs(cards[0]["y"] - cards[1]["y"]) < 1 and cards[1]["x"] > cards[0]["x"] + cards[0]["width"] - 1
    assert cards[2]["y"] > cards[0]["y"] + cards[0]["height"] - 1 and abs(cards[2]["x"] - cards[0]["x"]) < 1
    for box in cards[:4]:
        assert 140 < box["width"] < 187 and box["x"] >= 0 and box["x"] + box["width"] <= 375
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.locator("#filters").is_hidden() and page.locator("#filters-toggle").is_visible()
    image = screenshot(page, shots / "watch-375.png")
    assert image.shape[1] == 375
    photo = boxes(page, "#results .card .photo")[0]
    x, y = int(photo["x"]), int(photo["y"])
    crop = image[y + 4:min(y + int(photo["height"]) - 4, image.shape[0]), x + 4:x + int(photo["width"]) - 4]
    assert crop.size and crop.std() > 20, "the first photo box looks blank at 375 px"

    page.click("#filters-toggle")
    assert page.locator("#filters").is_visible()
    facet = page.locator('.facet[data-field="articleType"] input[value="Watches"]')
    facet.check()
    page.wait_for_url("**where=articleType%3DWatches**")
    wait_status(page, "of 10 results")
    assert page.locator("#filters-toggle").inner_text() == "Filters (1)"
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    screenshot(page, shots / "watch-filters-375.png")


def test_text_only_catalog_has_no_photo_box_and_more_like_this_by_text(text_shop, open_page, shots):
    for viewport in (WIDE, NARROW):
        page = open_page(text_shop.base + "/?q=leather+wallet", viewport)
        wait_status(page, "results for “leather wallet”")
        assert page.locator("#results .card").count() > 0
        assert page.locator("#results .card .photo, #results .card img").count() == 0
        assert page.locator("#drop-zone").is_hidden()
        for box in boxes(page, "#results .card")[:6]:
            assert box["height"] < 200, "a text-only card holds no photo box"
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        screenshot(page, shots / f"text-only-{viewport['width']}.png")

    first = page.locator("#results .card").first
    first_id, title = first.get_attribute("data-id"), first.locator(".title").inner_text()
    first.locator("button.more-like-this").click()
    page.wait_for_url(f"**like={first_id}**")
    wait_status(page, f"like “{title}”")
    similar = httpx.get(f"{text_shop.base}/products/{first_id}/similar", params={"space": "text", "k": 24}).json()
    assert shown_ids(page) == [h["id"] for h in similar["results"]] and first_id not in shown_ids(page)
    page.go_back()
    wait_status(page, "results for “leather wallet”")


def test_photo_upload_finds_the_product_and_an_empty_query_says_so(shop, open_page, tmp_path):
    shoe = next(r for r in shop.rows if r["articleType"] == "Sports Shoes")
    photo = tmp_path / "my-photo.jpg"
    shutil.copy(DEMO_DATA / shoe["image"], photo)
    page = open_page(shop.base + "/")
    page.set_input_files("#image-input", str(photo))
    wait_status(page, "like my-photo.jpg")
    assert shown_ids(page)[0] == shoe["id"]

    page.fill("#query", "   ")
    page.press("#query", "Enter")
    assert "error" in page.get_attribute("#status", "class")
    version = page.locator("#index-version").inner_text()
    assert version and version != "…"
