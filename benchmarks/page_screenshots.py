"""Screenshots of the search page on a sample of H&M articles, at 1280 and 375 px, to look at by eye.

    python benchmarks/page_screenshots.py [--articles 300] [--out benchmarks/out] [--reuse]

Whole product groups (all colours of a product_code) are taken from the first articles that sold, with a
price derived from their mean transaction price (x 1000; H&M's prices are scaled), indexed with the
default models, served by `vitrina serve --currency EUR` and photographed in headless Chromium in a few
states (a typo, a colour filter with a price sort, "more like this", the folded filters at 375 px).
The PNGs land in OUT/page/.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

from benchutil import DATA, DATA_IMAGES, DEFAULT_OUT, ensure_index, start_server
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.catalog import CatalogConfig

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STATES = {  # name -> page path
    "typo": "/?q=jaket",
    "filtered-sorted": "/?q=trousers&where=colour_group_name%3DBlack&sort=price_asc",
    "no-results": "/?q=trousers&where=colour_group_name%3DBlack&price_max=1",
}


def hm_sample(articles: int, out: Path) -> Path:
    """The first `articles` H&M articles of products that sold (whole colour groups), with a price column."""
    source = DATA / "hm"
    prices: dict[str, list[float]] = defaultdict(list)
    with (source / "transactions.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            prices[row["article_id"]].append(float(row["price"]))
    groups: dict[str, list[dict]] = defaultdict(list)
    with (source / "articles.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            groups[row["product_code"]].append(row)
    picked: list[dict] = []
    for members in groups.values():
        sold = [p for m in members for p in prices.get(m["article_id"], [])]
        if sold and len(picked) < articles:
            for m in members[: articles - len(picked)]:
                own = prices.get(m["article_id"]) or sold
                picked.append({**m, "image": str((source / m["image"]).resolve()), "price": f"{sum(own) / len(own) * 1000:.2f}"})
    target = out / f"hm-page-sample-{articles}.csv"
    out.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(picked[0]))
        writer.writeheader()
        writer.writerows(picked)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=300)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--reuse", action="store_true", help="reuse the index built by an earlier run")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    catalog = hm_sample(args.articles, args.out)
    index = args.out / f"hm-page-{args.articles}"
    config = VitrinaConfig(progress=False, images=DATA_IMAGES, catalog=CatalogConfig(
        id_field="article_id", text_fields=("prod_name", "product_type_name", "colour_group_name", "detail_desc")))
    ensure_index(catalog, index, config, args.reuse)
    shots = args.out / "page"
    shots.mkdir(parents=True, exist_ok=True)
    server = start_server(index, args.port, ["--currency", "EUR", "--rate-limit", "off"])
    base = f"http://127.0.0.1:{args.port}"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            for width, height in ((1280, 900), (375, 812)):
                page = browser.new_page(viewport={"width": width, "height": height}, locale="en-US")
                page.on("pageerror", lambda exc: print("page error:", exc))
                states = dict(STATES)
                for name, path in states.items():
                    page.goto(base + path)
                    page.wait_for_selector("#results .card, #no-results:not([hidden])")
                    page.wait_for_load_state("networkidle")
                    page.screenshot(path=str(shots / f"{name}-{width}.png"))
                    print(f"{width} px {name}: {page.locator('#status').inner_text()}")
                page.goto(base + STATES["typo"])
                page.wait_for_selector("#results .card")
                page.locator("#results .card button.more-like-this").first.click()
                page.wait_for_function("document.querySelector('#status').textContent.includes('like')")
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(shots / f"more-like-this-{width}.png"))
                if width < 700:
                    page.goto(base + STATES["filtered-sorted"])
                    page.wait_for_selector("#results .card")
                    page.click("#filters-toggle")
                    page.screenshot(path=str(shots / f"filters-open-{width}.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    print(f"screenshots in {shots}")


if __name__ == "__main__":
    main()
