"""Several images per product (issue 18): a list in the image field or several image columns, one vector per
image, best-image scoring for `similar` and text -> image, `matched_image` on hits, per-image reuse on upsert,
bad images and the cap. Real packaged encoders on demo photos."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from vitrina.engine.api import Index
from vitrina.engine.build.indexing import build_index
from vitrina.engine.build.reindex import ReindexConfig, reindex
from vitrina.engine.build.updates import upsert
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.catalog import CatalogConfig, image_sources, read_catalog
from vitrina.engine.errors import CatalogError
from vitrina.engine.query.search import SearchSession
from vitrina.index import IndexDirectory
from vitrina.index.versions import resolve_index_path
from tests.helpers import demo_catalog, demo_rows, run_cli, write_csv

pytestmark = pytest.mark.slow
CONFIG = VitrinaConfig(progress=False)


def img(row: dict) -> str:
    return row["image"]


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return demo_rows()[:40]


@pytest.fixture(scope="module")
def folder(rows, tmp_path_factory):
    """A folder holding the 40 demo photos and a single-image catalog of the first 30 (products.csv)."""
    dest = tmp_path_factory.mktemp("multi")
    demo_catalog(dest, rows)
    write_csv(dest / "products.csv", rows[:30])
    return dest


def multi_rows(rows: list[dict]) -> list[dict]:
    """30 single-image products, then products with several images (a `|` list, a JSON array, a bad entry)."""
    out = [dict(r) for r in rows[:30]]
    base = {k: v for k, v in rows[30].items() if k not in ("id", "image")}
    out.append({**base, "id": "pair", "title": "a pair of photos", "image": f"{img(rows[30])}|{img(rows[31])}"})
    out.append({**base, "id": "trio", "title": "three photos", "image": json.dumps([img(rows[32]), img(rows[33]), img(rows[34])])})
    out.append({**base, "id": "holey", "title": "one photo missing",
                "image": f"{img(rows[35])}|images/missing.jpg|../../outside.jpg|{img(rows[36])}"})
    out.append({**base, "id": "copy31", "title": "a copy of the pair's second photo", "image": img(rows[31])})
    return out


@pytest.fixture(scope="module")
def multi(rows, folder, tmp_path_factory):
    """(index path, build report) of the catalog with several images per product."""
    catalog = write_csv(folder / "multi.csv", multi_rows(rows))
    out = tmp_path_factory.mktemp("multi-index") / "idx"
    return out, build_index(catalog, out, CONFIG)


def test_image_sources_parse_lists_json_and_pipes():
    assert image_sources(["a.jpg"]) == ["a.jpg"]
    assert image_sources(["a.jpg | b.jpg|"]) == ["a.jpg", "b.jpg"]
    assert image_sources(['["a.jpg", "https://x/b.png"]', None, ["c.jpg", ""]]) == ["a.jpg", "https://x/b.png", "c.jpg"]
    assert image_sources(["[not json"]) == ["[not json"]  # kept whole: it fails as one image, nothing else


def test_catalog_reads_a_list_field_and_several_columns(folder, rows):
    catalog = read_catalog(write_csv(folder / "list.csv", multi_rows(rows)))
    by_id = {p.id: p for p in catalog.products}
    assert by_id["trio"].image_sources == tuple(str(folder / img(rows[i])) for i in (32, 33, 34))
    assert by_id["trio"].image == str(folder / img(rows[32]))
    assert by_id[rows[0]["id"]].images == () and by_id[rows[0]["id"]].image_sources == (str(folder / img(rows[0])),)
    columns = [{"id": "x", "title": "two columns", "front": img(rows[0]), "back": img(rows[1])},
               {"id": "y", "title": "front only", "front": img(rows[2]), "back": ""}]
    both = read_catalog(write_csv(folder / "columns.csv", columns), CatalogConfig(image_field="front,back",
                                                                                 image_field_required=True))
    assert both.products[0].image_sources == (str(folder / img(rows[0])), str(folder / img(rows[1])))
    assert both.products[1].image_sources == (str(folder / img(rows[2])),)
    with pytest.raises(CatalogError, match="image field 'side' is not a column"):
        read_catalog(folder / "columns.csv", CatalogConfig(image_field="front,side", image_field_required=True))


def test_one_vector_per_image_and_bad_images_keep_the_rest(multi, rows):
    path, report = multi
    directory = IndexDirectory.load(path)
    space = directory.spaces["image"]
    row = {pid: directory.products.row_of(pid) for pid in ("pair", "trio", "holey", "copy31")}
    assert len(space.rows) == 30 + 2 + 3 + 2 + 1  # every readable image has its vector
    assert sorted(space.ordinals[space.positions_of_row(row["trio"])].tolist()) == [0, 1, 2]
    assert space.ordinals[space.positions_of_row(row["holey"])].tolist() == [0, 3]  # 1 missing, 2 outside the folder
    failed = [(pid, why) for pid, why in report.image_failures]
    assert [pid for pid, _ in failed] == ["holey", "holey"]
    assert "missing.jpg" in failed[0][1] and "outside.jpg" in failed[1][1]
    assert report.manifest.images_failed == 2
    mean = space.vector_of_row(row["pair"])  # the product's one vector: the normalised mean of its images'
    own = np.asarray(space.vectors[space.positions_of_row(row["pair"])])
    expected = own.mean(axis=0) / np.linalg.norm(own.mean(axis=0))
    assert np.allclose(mean, expected, atol=1e-6)


def test_photo_query_scores_a_product_by_its_best_image_and_names_it(multi, folder, rows):
    path, _ = multi
    index = Index(path, CONFIG)
    hits = index.similar(image=folder / img(rows[33]), k=5)  # the trio's second photo
    assert hits[0].id == "trio" and hits[0].score == pytest.approx(1.0, abs=1e-4)  # max-pool, not the mean
    assert hits[0].matched_image == img(rows[33]) and hits[0].matched_image_index == 1
    assert len({h.id for h in hits}) == len(hits) == 5  # one hit per product
    single = next(h for h in hits if h.id not in ("pair", "trio", "holey"))
    assert single.matched_image_index == 0  # a one-photo product names its photo
    record = hits[0].to_json()
    assert record["matched_image"] == img(rows[33]) and record["matched_image_index"] == 1


def test_similar_by_id_queries_with_each_image(multi, rows):
    index = Index(multi[0], CONFIG)
    hits = index.similar("pair", k=5, space="image")
    assert "pair" not in [h.id for h in hits]
    assert hits[0].id == "copy31" and hits[0].score == pytest.approx(1.0, abs=1e-4)  # its second photo's twin
    assert hits[0].matched_image == img(rows[31])
    back = index.similar("copy31", k=3, space="image")
    assert back[0].id == "pair" and back[0].matched_image == img(rows[31]) and back[0].matched_image_index == 1


def test_text_hits_carry_null_matched_image_on_multi_image_indexes(multi):
    index = Index(multi[0], CONFIG)
    hit = index.search("shoes", k=3)[0]
    assert hit.matched_image is None and hit.to_json()["matched_image"] is None


def test_text_to_image_max_pools_in_the_shared_space(multi, folder, rows, tmp_path):
    import shutil

    path = tmp_path / "trained"
    shutil.copytree(multi[0], path)
    index = Index(path, CONFIG)
    index.train(dim=32, epochs=2)
    shared = IndexDirectory.load(path).spaces["shared-image"]
    assert shared.multi and shared.ordinals is not None  # one projected vector per image
    hits = index.search("three photos", k=10, space="image", mode="dense")
    assert len({h.id for h in hits}) == len(hits) == 10
    assert all(h.matched_image is not None for h in hits)
    fused = index.similar("trio", k=3)  # fused space: one (mean) vector per product; images named by looks
    assert fused and all(h.matched_image is not None for h in fused)
    by_photo = index.similar(image=folder / img(rows[33]), k=10)  # default space once trained: fused
    trio = next(h for h in by_photo if h.id == "trio")
    assert trio.matched_image == img(rows[33]) and trio.matched_image_index == 1


def test_cap_refuses_the_images_beyond_it(rows, folder, tmp_path):
    catalog = write_csv(folder / "cap.csv", multi_rows(rows))
    config = dataclasses.replace(CONFIG, catalog=CatalogConfig(max_images=2))
    report = build_index(catalog, tmp_path / "capped", config)
    directory = IndexDirectory.load(tmp_path / "capped")
    space = directory.spaces["image"]
    assert len(space.positions_of_row(directory.products.row_of("trio"))) == 2
    refused = [why for pid, why in report.image_failures if pid == "trio"]
    assert refused == ["1 more image(s) left out: at most 2 per product (max_images)"]
    assert len(space.positions_of_row(directory.products.row_of("holey"))) == 1  # missing.jpg is within the cap
    with pytest.raises(CatalogError, match="max_images"):
        read_catalog(catalog, CatalogConfig(max_images=0))


def test_upsert_of_one_image_reuses_the_others(rows, folder, tmp_path):
    catalog = write_csv(folder / "versioned.csv", multi_rows(rows))
    root = tmp_path / "root"
    reindex(catalog, root, CONFIG, ReindexConfig())
    before = IndexDirectory.load(root)
    old = before.spaces["image"]
    trio_before = np.asarray(old.vectors[old.positions_of_row(before.products.row_of("trio"))])
    changed = [r for r in multi_rows(rows) if r["id"] == "trio"]
    changed[0]["image"] = json.dumps([img(rows[32]), img(rows[37]), img(rows[34])])  # the second photo replaced
    report = upsert(root, write_csv(folder / "one.csv", changed), CONFIG)
    assert report.encoded["image"] == 1 and report.updated == 1
    after = IndexDirectory.load(resolve_index_path(root))
    new = after.spaces["image"]
    trio_after = np.asarray(new.vectors[new.positions_of_row(after.products.row_of("trio"))])
    assert np.array_equal(trio_after[0], trio_before[0]) and np.array_equal(trio_after[2], trio_before[2])
    assert not np.allclose(trio_after[1], trio_before[1])
    session = SearchSession(root, CONFIG)
    hit = session.similar_to_images([folder / img(rows[37])], k=1, space="image")[0][0]
    assert hit.id == "trio" and hit.matched_image == img(rows[37]) and hit.matched_image_index == 1


def test_single_image_catalogs_are_unchanged(folder, tmp_path):
    out = tmp_path / "single"
    build_index(folder / "products.csv", out, CONFIG)
    assert not list(out.glob("*.ordinals.npy"))
    index = Index(out, CONFIG)
    hits = index.similar(index.search("shoes", k=1)[0].id, k=3, space="image")
    assert all(h.matched_image is None and "matched_image" not in h.to_json() for h in hits)
    code, stdout, _ = run_cli("similar", out, "--id", hits[0].id, "--space", "image", "--json", "-k", "2")
    assert code == 0 and "matched_image" not in stdout


def test_cli_json_names_the_matched_image(multi, rows):
    code, stdout, stderr = run_cli("similar", multi[0], "--id", "copy31", "--space", "image", "--json", "-k", "2")
    assert code == 0, stderr
    record = json.loads(stdout)
    results = record["results"] if isinstance(record, dict) else record
    assert results[0]["id"] == "pair" and results[0]["matched_image"] == img(rows[31])


def test_http_names_the_matched_image_and_serves_each_image(multi, folder, rows):
    from tests.serving_util import KEY, ready_client

    client = ready_client(multi[0])
    try:
        headers = {"X-API-Key": KEY}
        body = client.get("/products/copy31/similar", params={"space": "image", "k": 2}, headers=headers).json()
        top = body["results"][0]
        assert top["id"] == "pair" and top["matched_image"] == img(rows[31]) and top["matched_image_index"] == 1
        assert top["image"] == ["/products/pair/image?n=0", "/products/pair/image?n=1"]  # no local paths
        second = client.get("/products/pair/image", params={"n": 1}, headers=headers)
        assert second.status_code == 200 and second.content == (folder / img(rows[31])).read_bytes()
        assert client.get("/products/pair/image", params={"n": 2}, headers=headers).status_code == 404
        text = client.get("/search", params={"q": "shoes", "k": 1}, headers=headers).json()["results"][0]
        assert text["matched_image"] is None
    finally:
        client.__exit__(None, None, None)


def test_cli_max_images_flag(rows, folder, tmp_path):
    catalog = write_csv(folder / "cli-cap.csv", multi_rows(rows))
    code, _, stderr = run_cli("index", catalog, "--out", tmp_path / "bad", "--max-images", "0", "-q")
    assert code != 0 and "max_images must be a whole number of at least 1, got 0" in stderr
    assert "Traceback" not in stderr


def test_ray_engine_embeds_every_image_like_the_local_one(rows, folder, tmp_path):
    ray = pytest.importorskip("ray")
    catalog = write_csv(folder / "ray.csv", multi_rows(rows))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        local = reindex(catalog, tmp_path / "local", CONFIG, ReindexConfig(shard_size=20))
        remote = reindex(catalog, tmp_path / "ray", CONFIG, ReindexConfig(shard_size=20, engine="ray", ray_actors=1))
    finally:
        ray.shutdown()
    x, y = IndexDirectory.load(local.path), IndexDirectory.load(remote.path)
    assert x.content.image_hashes == y.content.image_hashes
    a, b = x.spaces["image"], y.spaces["image"]
    assert np.array_equal(a.rows, b.rows) and np.array_equal(a.ordinals, b.ordinals)
    assert np.min(np.sum(np.asarray(a.vectors) * np.asarray(b.vectors), axis=1)) > 0.98
    assert remote.images_failed == local.images_failed == 2
