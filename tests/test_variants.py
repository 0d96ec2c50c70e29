"""Variants: one hit per product group (a group field, or collapsed duplicates) in search, similar and recommend,
in Python, the CLI and HTTP, checked against the ungrouped ranking of the same catalog."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import vitrina
from vitrina.engine.build.groups import DUPLICATE_COSINE, duplicate_groups, field_groups, normalised_title
from vitrina.engine.errors import CatalogError
from vitrina.engine.query.hits import MAX_K
from vitrina.index import IndexDirectory
from vitrina.index.versions import resolve_index_path
from tests.helpers import demo_catalog, demo_rows, run_cli, write_csv
from tests.serving_util import KEY, ready_client

TYPES = ("Watches", "Sports Shoes", "Wallets", "Tshirts", "Handbags")
LONG_CODE = "L" * 5000
QUERIES = ("black watch", "shoes for men", "leather wallet", "blue")
CONFIG = vitrina.VitrinaConfig(progress=False)


def shop_rows(per_type: int = 8) -> list[dict]:
    """Demo products of five types; within a type, each run of three shares a product_code (one product in
    three colours), with hostile codes on the first type: an empty one, a 5,000-character one shared by two."""
    rows = demo_rows()
    picked = [dict(r) for kind in TYPES for r in [r for r in rows if r["articleType"] == kind][:per_type]]
    for i, r in enumerate(picked):
        r["product_code"] = f"{r['articleType'][:4]}-{(i % per_type) // 3}"
        r["price"] = f"{int(r['id']) % 90 + 5}.99"
    picked[0]["product_code"] = ""
    picked[1]["product_code"] = picked[2]["product_code"] = LONG_CODE
    return picked


@pytest.fixture(scope="module")
def models(tiny_bert_dir, tiny_resnet_weights) -> dict[str, str]:
    return {"text_model": str(tiny_bert_dir), "image_model": f"resnet18={tiny_resnet_weights}"}


@pytest.fixture(scope="module")
def shop(tmp_path_factory, models) -> tuple[Path, Path, list[dict]]:
    """(a versioned root grouped by product_code, the same catalog ungrouped, the rows)."""
    rows = shop_rows()
    catalog = demo_catalog(tmp_path_factory.mktemp("variants-shop"), rows)
    grouped = tmp_path_factory.mktemp("variants-index") / "grouped"
    plain = tmp_path_factory.mktemp("variants-index") / "plain"
    vitrina.Index.build(catalog, grouped, text_fields=["title"], group_field="product_code", config=CONFIG, **models)
    vitrina.Index.build(catalog, plain, text_fields=["title"], config=CONFIG, **models)
    return grouped, plain, rows


def group_of(rows: list[dict]) -> dict[str, str]:
    """Product id -> its group key (an empty code: the product alone)."""
    return {r["id"]: r["product_code"].strip() or f"alone:{r['id']}" for r in rows}


def expected_page(plain_hits, rows: list[dict], k: int, offset: int = 0, allowed: set[str] | None = None):
    """The grouped answer computed from the ungrouped ranking: the first hit of each group, and its variants (the
    other members retrieved, in rank order, then the rest by catalog row, within `allowed`)."""
    group = group_of(rows)
    order = [r["id"] for r in rows]
    shown: dict[str, list[str]] = {}
    for hit in plain_hits:
        shown.setdefault(group[hit.id], []).append(hit.id)
    page = list(shown.items())[offset:offset + k]
    out = []
    for key, ranked in page:
        rest = [i for i in order if group[i] == key and i not in ranked and (allowed is None or i in allowed)]
        out.append((ranked[0], ranked[1:] + rest))
    return out


@pytest.mark.parametrize("mode", ["hybrid", "lexical", "dense"])
@pytest.mark.parametrize("query", QUERIES)
def test_search_shows_one_hit_per_group_the_best_member_with_its_variants(shop, query, mode) -> None:
    grouped, plain, rows = shop
    hits = vitrina.Index(grouped, CONFIG).search(query, 5, mode=mode)
    everything = vitrina.Index(plain, CONFIG).search(query, len(rows), mode=mode)
    assert [(h.id, h.variants) for h in hits] == expected_page(everything, rows, 5)
    assert len({group_of(rows)[h.id] for h in hits}) == len(hits)
    assert all(h.to_json()["variants"] == h.variants for h in hits)


def test_without_grouping_hits_have_no_variants_and_the_json_is_unchanged(shop) -> None:
    _, plain, _ = shop
    hits = vitrina.Index(plain, CONFIG).search("black watch", 5)
    assert all(h.variants is None and "variants" not in h.to_json() for h in hits)
    assert not (resolve_index_path(plain) / "groups.npy").exists()
    assert "groups" not in vitrina.Index(plain, CONFIG).manifest.catalog


def test_groups_are_stored_in_the_version_and_recorded_in_the_manifest(shop) -> None:
    grouped, _, rows = shop
    directory = IndexDirectory.load(grouped)
    assert directory.manifest.catalog["groups"] == {"field": "product_code"}
    stored = np.load(resolve_index_path(grouped) / "groups.npy")
    group = group_of(rows)
    by_id = dict(zip(directory.products.ids, stored))
    for a in by_id:
        for b in by_id:
            assert (by_id[a] == by_id[b]) == (group[a] == group[b])


def test_hostile_group_values_an_empty_one_is_alone_a_long_one_groups(shop) -> None:
    grouped, _, rows = shop
    index = vitrina.Index(grouped, CONFIG)
    everything = index.search("watch", 40, mode="dense")
    variants = {h.id: h.variants for h in everything}
    assert variants[rows[0]["id"]] == []  # the empty code: a group of its own
    long_pair = {rows[1]["id"], rows[2]["id"]}
    shown = [i for i in long_pair if i in variants]
    assert len(shown) == 1 and set(variants[shown[0]]) == long_pair - set(shown)


def test_a_missing_group_field_is_an_error_naming_it(tmp_path, models) -> None:
    catalog = demo_catalog(tmp_path, shop_rows()[:6])
    with pytest.raises(CatalogError, match="group field 'colourway' is not a column"):
        vitrina.Index.build(catalog, tmp_path / "idx", text_fields=["title"], group_field="colourway", config=CONFIG,
                            **models)
    code, _, err = run_cli("index", catalog, "--out", tmp_path / "idx2", "--text-fields", "title", "--group-field",
                           "colourway", "--text-model", models["text_model"], "--image-model", "none", "-q")
    assert code == 1 and "group field 'colourway' is not a column" in err and "--group-field" in err
    assert "Traceback" not in err
    code, _, err = run_cli("reindex", catalog, "--out", tmp_path / "root", "--text-fields", "title", "--group-field",
                           "colourway", "--text-model", models["text_model"], "--image-model", "none", "-q")
    assert code == 1 and "group field 'colourway' is not a column" in err and not (tmp_path / "root" / "current").exists()


def test_pages_of_groups_concatenate_to_the_unpaged_list(shop) -> None:
    grouped, _, _ = shop
    index = vitrina.Index(grouped, CONFIG)
    for mode in ("hybrid", "lexical", "dense"):
        whole = index.search("shoes for men", 9, mode=mode)
        pages = [h for offset in (0, 3, 6) for h in index.search("shoes for men", 3, mode=mode, offset=offset)]
        assert [(h.id, h.variants) for h in pages] == [(h.id, h.variants) for h in whole]


def test_retrieval_widens_until_the_page_is_full_of_groups(shop, monkeypatch) -> None:
    """With retrieval depths below the catalog size, deeper retrievals extend the ranking: the page still holds
    k groups, equal to the ungrouped ranking collapsed (lexical, dense), and pages still concatenate (hybrid)."""
    import vitrina.engine.query.variants as variants

    grouped, plain, rows = shop
    monkeypatch.setattr(variants, "DEPTHS", (3, 6, 12, MAX_K))
    index = vitrina.Index(grouped, CONFIG)
    for mode in ("lexical", "dense"):
        everything = vitrina.Index(plain, CONFIG).search("men", len(rows), mode=mode)
        hits = index.search("men", 8, mode=mode)  # variants past the rows retrieved come in catalog order
        assert [(h.id, set(h.variants)) for h in hits] == [(i, set(v)) for i, v in expected_page(everything, rows, 8)]
    whole = index.search("shoes for men", 8)
    assert len(whole) == 8
    pages = [h for offset in (0, 2, 4, 6) for h in index.search("shoes for men", 2, offset=offset)]
    assert [(h.id, h.variants) for h in pages] == [(h.id, h.variants) for h in whole]


def test_variants_are_capped_best_first(shop, monkeypatch) -> None:
    import vitrina.engine.query.variants as variants

    grouped, _, _ = shop
    index = vitrina.Index(grouped, CONFIG)
    full = index.search("watch", 6, mode="dense")
    monkeypatch.setattr(variants, "MAX_VARIANTS", 1)
    capped = index.search("watch", 6, mode="dense")
    assert any(len(h.variants) > 1 for h in full)
    assert [(h.id, h.variants) for h in capped] == [(h.id, h.variants[:1]) for h in full]


def test_price_sorts_page_through_groups_and_total_counts_groups(shop) -> None:
    grouped, plain, rows = shop
    index = vitrina.Index(grouped, CONFIG)
    group = group_of(rows)
    price = {r["id"]: float(r["price"]) for r in rows}
    whole = index.search("black", 40, sort="price_asc", facets=["articleType"])
    matched = vitrina.Index(plain, CONFIG).search("black", 40, sort="price_asc", facets=["articleType"])
    assert whole.total == len({group[h.id] for h in matched}) == len(whole)
    assert sum(whole.facets["articleType"].values()) == matched.total  # facets still count products
    assert [(h.id, h.variants) for h in whole] == expected_page(matched, rows, 40)
    assert [price[h.id] for h in whole] == sorted(price[h.id] for h in whole)
    pages = [h.id for offset in (0, 4) for h in index.search("black", 4, sort="price_asc", offset=offset)]
    assert pages == [h.id for h in whole[:8]]


def test_variants_respect_the_filters(shop) -> None:
    grouped, plain, rows = shop
    where = {"baseColour": ["Black", "White"]}
    allowed = {r["id"] for r in rows if r["baseColour"] in where["baseColour"]}
    hits = vitrina.Index(grouped, CONFIG).search("men", 4, mode="dense", where=where)
    everything = vitrina.Index(plain, CONFIG).search("men", 40, mode="dense", where=where)
    assert [(h.id, h.variants) for h in hits] == expected_page(everything, rows, 4, allowed=allowed)
    assert all(set(h.variants) <= allowed for h in hits)


def test_similar_by_id_leaves_out_the_products_own_group(shop) -> None:
    grouped, plain, rows = shop
    group = group_of(rows)
    product = rows[10]["id"]
    for space in ("image", "text"):
        hits = vitrina.Index(grouped, CONFIG).similar(product, k=4, space=space)
        everything = [h for h in vitrina.Index(plain, CONFIG).similar(product, k=39, space=space)
                      if group[h.id] != group[product]]
        assert [(h.id, h.variants) for h in hits] == expected_page(everything, rows, 4)
        assert group[product] not in {group[h.id] for h in hits}


def test_similar_by_image_shows_one_hit_per_group(shop) -> None:
    grouped, plain, rows = shop
    photo = Path(IndexDirectory.load(grouped).manifest.catalog["source"]).parent / rows[5]["image"]
    hits = vitrina.Index(grouped, CONFIG).similar(image=str(photo), k=5)
    everything = vitrina.Index(plain, CONFIG).similar(image=str(photo), k=40)
    assert [(h.id, h.variants) for h in hits] == expected_page(everything, rows, 5)


def test_recommend_shows_one_hit_per_group(tmp_path, shop) -> None:
    grouped, _, rows = shop
    root = tmp_path / "root"
    shutil.copytree(grouped, root, symlinks=True)
    index = vitrina.Index(root, CONFIG)
    events = [{"user_id": f"u{u}", "product_id": rows[(u * 7 + j) % len(rows)]["id"], "event": "purchase",
               "timestamp": 1_600_000_000 + u * 100 + j} for u in range(6) for j in range(5)]
    index.add_events(events, settings=vitrina.BehaviourConfig(factors=2, iterations=5))
    group = group_of(rows)
    for user in ("u1", "nobody"):
        hits = index.recommend(user, k=6)
        assert len(hits) == 6 and len({group[h.id] for h in hits}) == 6
        for h in hits:
            assert sorted(h.variants) == sorted(i for i in group if group[i] == group[h.id] and i != h.id)


def test_upsert_and_delete_keep_the_groups(tmp_path, shop, models) -> None:
    grouped, _, rows = shop
    root = tmp_path / "root"
    shutil.copytree(grouped, root, symlinks=True)
    index = vitrina.Index(root, CONFIG)
    source = rows[20]
    new = {**source, "id": "900001", "title": source["title"] + " new colour"}
    index.upsert([new])
    assert index.manifest.catalog["groups"] == {"field": "product_code"}
    members = {r["id"] for r in rows if r["product_code"] == source["product_code"]} | {"900001"}
    hits = index.search(source["title"], 40, mode="lexical")
    shown = next(h for h in hits if h.id in members)
    assert {shown.id, *shown.variants} == members
    index.delete(["900001", source["id"]])
    hits = index.search(source["title"], 40, mode="lexical")
    shown = next(h for h in hits if h.id in members)
    assert {shown.id, *shown.variants} == members - {"900001", source["id"]}
    with pytest.raises(CatalogError, match="groups products by 'product_code'"):
        index.upsert([{k: v for k, v in new.items() if k != "product_code"}])


def test_the_cli_shows_variants_in_json_and_in_the_table(tmp_path, models) -> None:
    rows = shop_rows()
    catalog = demo_catalog(tmp_path, rows)
    out = tmp_path / "idx"
    code, _, err = run_cli("index", catalog, "--out", out, "--text-fields", "title", "--group-field", "product_code",
                           "--text-model", models["text_model"], "--image-model", models["image_model"], "-q")
    assert code == 0, err
    code, stdout, err = run_cli("search", out, "black watch", "-k", "4", "--json")
    assert code == 0, err
    record = json.loads(stdout)
    assert all(isinstance(hit["variants"], list) for hit in record["results"])
    groups = [group_of(rows)[hit["id"]] for hit in record["results"]]
    assert len(set(groups)) == len(groups) == 4
    python = vitrina.Index(out, CONFIG).search("black watch", 4)
    assert [(h["id"], h["variants"]) for h in record["results"]] == [(h.id, h.variants) for h in python]
    code, stdout, _ = run_cli("search", out, "black watch", "-k", "4")
    assert code == 0 and "variants" in stdout
    with_variants = next(h for h in python if h.variants)
    assert f"+{len(with_variants.variants)}: {with_variants.variants[0]}" in stdout
    code, stdout, _ = run_cli("similar", out, "--id", rows[3]["id"], "-k", "3", "--json")
    assert code == 0 and all("variants" in hit for hit in json.loads(stdout)["results"])


def test_http_search_and_similar_show_variants(shop) -> None:
    grouped, _, rows = shop
    python = vitrina.Index(grouped, CONFIG)
    client = ready_client(grouped)
    try:
        headers = {"X-API-Key": KEY}
        body = client.get("/search", params={"q": "black watch", "k": 4}, headers=headers).json()
        assert [(h["id"], h["variants"]) for h in body["results"]] == [
            (h.id, h.variants) for h in python.search("black watch", 4)]
        page = client.get("/search", params={"q": "black watch", "k": 2, "offset": 2}, headers=headers).json()
        assert [h["id"] for h in page["results"]] == [h["id"] for h in body["results"][2:4]]
        similar = client.get(f"/products/{rows[3]['id']}/similar", params={"k": 3}, headers=headers).json()
        assert [(h["id"], h["variants"]) for h in similar["results"]] == [
            (h.id, h.variants) for h in python.similar(rows[3]["id"], k=3)]
    finally:
        client.__exit__(None, None, None)


# --- collapse duplicates --------------------------------------------------------------------------------------

def test_titles_are_normalised_for_duplicates() -> None:
    assert normalised_title("  Red  T-Shirt!! ") == normalised_title("red t shirt") == "red t shirt"
    assert normalised_title("ＲＥＤ Tee") == "red tee"  # NFKC: full-width letters
    assert normalised_title("Red T-Shirt") != normalised_title("Red T-Shirts")


def test_duplicate_groups_need_equal_titles_and_an_image_cosine_over_the_threshold() -> None:
    vectors = np.array([[1, 0], [0.96, 0.28], [0.8, 0.6], [1, 0]], dtype=np.float32)  # cosines to row 0: .96, .8, 1
    titles = ["Red Tee", "red tee!", "RED TEE", "Blue Tee"]
    rows = np.arange(4)
    assert list(duplicate_groups(titles, vectors, rows, 0.95)) == [0, 0, 1, 2]
    assert list(duplicate_groups(titles, vectors, rows, 0.97)) == [0, 1, 2, 3]
    assert list(duplicate_groups(titles, vectors, rows, 0.79)) == [0, 0, 0, 1]
    assert list(duplicate_groups(titles, None, None, 0.95)) == [0, 0, 0, 1]  # text only: equal titles
    assert list(field_groups(["a", "", None, " a ", "b"])) == [0, 1, 2, 0, 3]


def test_collapse_duplicates_groups_reuploads_at_the_measured_threshold(tmp_path, models) -> None:
    rows = [dict(r) for r in demo_rows()[:12]]
    copy = {**rows[0], "id": "800001"}  # the same product uploaded again: same title, same photo
    other = {**rows[1], "id": "800002", "title": rows[0]["title"].upper() + "!", "image": rows[2]["image"]}
    catalog = demo_catalog(tmp_path, rows + [copy, other])
    path = tmp_path / "idx"
    index = vitrina.Index.build(catalog, path, text_fields=["title"], collapse_duplicates=True, config=CONFIG, **models)
    assert index.manifest.catalog["groups"] == {"collapse_duplicates": {"title_field": "title",
                                                                        "cosine": DUPLICATE_COSINE}}
    image = IndexDirectory.load(path).spaces["image"]
    cosine = float(image.vector_of_row(0) @ image.vector_of_row(len(rows) + 1))  # same title, another photo
    groups = {h.id: h.variants for h in index.search(rows[0]["title"], 20, mode="lexical")}
    shown = rows[0]["id"] if rows[0]["id"] in groups else "800001"
    assert set(groups[shown]) >= {rows[0]["id"], "800001"} - {shown}
    assert ("800002" in groups[shown]) == (cosine >= DUPLICATE_COSINE)
    for threshold, together in ((cosine - 1e-3, True), (min(1.0, cosine + 1e-3), False)):
        rebuilt = vitrina.Index.build(catalog, tmp_path / f"idx-{together}", text_fields=["title"],
                                      collapse_duplicates=threshold, config=CONFIG, **models)
        groups = {h.id: h.variants for h in rebuilt.search(rows[0]["title"], 20, mode="lexical")}
        variants = groups.get(rows[0]["id"], groups.get("800001"))
        assert ("800002" in variants) == together


def test_collapse_duplicates_on_a_text_only_catalog_groups_equal_titles(tmp_path, tiny_bert_dir) -> None:
    rows = [{"id": "1", "title": "Red T-Shirt"}, {"id": "2", "title": "red t shirt!"}, {"id": "3", "title": "Blue Shirt"}]
    catalog = write_csv(tmp_path / "c.csv", rows)
    code, _, err = run_cli("index", catalog, "--out", tmp_path / "idx", "--collapse-duplicates",
                           "--text-model", str(tiny_bert_dir), "--image-model", "none", "-q")
    assert code == 0, err
    hits = vitrina.Index(tmp_path / "idx", CONFIG).search("shirt", 10, mode="lexical")
    assert sorted((h.id, tuple(h.variants)) for h in hits) == [("1", ("2",)), ("3", ())]


def test_a_group_field_and_collapse_duplicates_are_not_given_together(tmp_path, tiny_bert_dir) -> None:
    catalog = write_csv(tmp_path / "c.csv", [{"id": "1", "title": "a", "code": "x"}])
    with pytest.raises(CatalogError, match="two ways to group"):
        vitrina.Index.build(catalog, tmp_path / "idx", group_field="code", collapse_duplicates=True, config=CONFIG,
                            text_model=str(tiny_bert_dir), image_model="none")
