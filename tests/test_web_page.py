"""The search page end to end in headless Chromium (Debian's, driven by Playwright): search, filter,
"more like this", photo upload, and a screenshot that shows product images."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitrina.engine.config import VitrinaConfig
from vitrina.engine.build.indexing import build_index
from tests.helpers import DEMO_DATA
from tests.serving_util import running_server, shop_catalog

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [  # no sandbox as root; no calls home on a machine without internet
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} not installed (apt-get install chromium; .ci/run does)"),
]


def test_search_page_searches_filters_finds_look_alikes_and_takes_uploads(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    catalog, rows = shop_catalog(tmp_path)
    build_index(catalog, tmp_path / "idx", VitrinaConfig(progress=False))
    shoe = next(r for r in rows if r["articleType"] == "Sports Shoes")
    photo = tmp_path / "my-photo.jpg"
    shutil.copy(DEMO_DATA / shoe["image"], photo)
    shot = tmp_path / "search-page.png"
    with running_server(tmp_path / "idx") as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(base + "/")
        expect(page.locator("#filter-category option")).to_have_count(len({r["articleType"] for r in rows}) + 1)

        page.fill("#query", "leather wallet")
        page.press("#query", "Enter")
        cards = page.locator("#results .card")
        expect(cards).to_have_count(24)
        titles = cards.locator(".title").all_inner_texts()
        assert sum("Wallet" in t for t in titles[:5]) >= 4, titles[:5]
        expect(page.locator("#status")).to_contain_text("24 results for “leather wallet”")
        assert page.locator("#results .card .price").first.inner_text().startswith("$")
        page.wait_for_function("[...document.querySelectorAll('#results img')].slice(0, 6).every(i => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=str(shot))

        page.select_option("#filter-category", "Watches")  # re-runs the search inside the filter
        expect(page.locator("#status")).to_contain_text("10 results")
        shown = cards.locator(".title").all_inner_texts()
        assert {r["articleType"] for r in rows if r["title"] in shown} == {"Watches"}
        page.select_option("#filter-category", "")
        expect(page.locator("#status")).to_contain_text("24 results for “leather wallet”")

        first_title = cards.locator(".title").first.inner_text()
        cards.first.locator("button.more-like-this").click()
        expect(page.locator("#status")).to_contain_text(f"like “{first_title}”")

        page.set_input_files("#image-input", str(photo))
        expect(page.locator("#status")).to_contain_text("like my-photo.jpg")
        assert cards.first.get_attribute("data-id") == shoe["id"]

        page.fill("#query", "   ")
        page.press("#query", "Enter")
        expect(page.locator("#status")).to_have_class("error")
        version = page.locator("#index-version").inner_text()
        browser.close()
    assert not errors
    assert version and version != "…"

    image = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("RGB"), dtype=np.float32)
    assert image.shape == (900, 1280, 3)
    grid = image[250:, :]  # below the header and filters: the product cards
    assert grid.std() > 20, "the results grid looks blank"
    coloured = np.abs(grid[..., 0] - grid[..., 2]) > 30  # product photos bring colour; the page itself is grey and blue
    assert coloured.mean() > 0.01
