"""The Python API (`vitrina.Index`) end to end on tiny random models: build from a file or from records,
open plain directories and versioned roots, search, filters, look-alikes, writes that the object sees,
events and recommendations, training, evaluation, and errors worded in Python terms."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import vitrina
from vitrina.errors import CLI, HTTP, PYTHON, Param, Wording, worded
from vitrina.index.versions import CURRENT, is_versioned_root, resolve_index_path
from tests.helpers import REPO, demo_catalog, demo_rows, run_cli, write_csv

TYPES = ("Watches", "Sports Shoes", "Wallets", "Tshirts")


def shop_rows(per_type: int = 6) -> list[dict]:
    """Demo products of four types, each with a price."""
    rows = demo_rows()
    picked = [dict(r) for kind in TYPES for r in [r for r in rows if r["articleType"] == kind][:per_type]]
    for r in picked:
        r["price"] = f"{int(r['id']) % 90 + 5}.99"
    return picked


@pytest.fixture(scope="module")
def config() -> vitrina.VitrinaConfig:
    return vitrina.VitrinaConfig(progress=False)


@pytest.fixture(scope="module")
def models(tiny_bert_dir, tiny_resnet_weights) -> dict[str, str]:
    return {"text_model": str(tiny_bert_dir), "image_model": f"resnet18={tiny_resnet_weights}"}


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[Path, list[dict]]:
    rows = shop_rows()
    return demo_catalog(tmp_path_factory.mktemp("api-shop"), rows), rows


@pytest.fixture(scope="module")
def root(shop, models, config, tmp_path_factory) -> Path:
    """A versioned root built through the API from a CSV with images (not written to by the tests)."""
    path = tmp_path_factory.mktemp("api-root") / "root"
    vitrina.Index.build(shop[0], path, text_fields=["title"], image_field="image", config=config, **models)
    return path


@pytest.fixture(scope="module")
def index(root, config) -> vitrina.Index:
    return vitrina.Index.open(root, config)


def test_build_makes_a_versioned_root_that_opens_at_its_current_version(root, index, shop):
    assert is_versioned_root(root) and index.versioned
    assert index.manifest.version == resolve_index_path(root).name
    assert len(index) == len(shop[1]) and shop[1][0]["id"] in index
    assert set(index.info().spaces) == {"text", "image", "colour"} and index.info().catalog["text_fields"] == ["title"]
    assert vitrina.Index(root).build_report is None


def test_search_one_query_gives_hits_and_many_give_one_list_each(index, shop):
    hits = index.search("leather wallet", k=5)
    assert len(hits) == 5 and all(isinstance(h, vitrina.SearchHit) for h in hits)
    assert isinstance(hits, vitrina.Hits) and isinstance(hits, list) and hits.personalised is None  # no shopper
    assert hits == list(hits) and pickle.loads(pickle.dumps(hits)).personalised is None
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    row = next(r for r in shop[1] if r["id"] == hits[0].id)
    assert hits[0].product["title"] == row["title"] and hits[0].product["articleType"] == row["articleType"]
    many = index.search(["leather wallet", "sports shoes", "steel watch"], k=3)
    assert len(many) == 3 and all(len(h) == 3 for h in many)
    assert [h.id for h in many[0]] == [h.id for h in index.search("leather wallet", k=3)]


def test_where_and_price_filter_inside_retrieval(index, shop):
    hits = index.search("black", k=50, where={"articleType": "Wallets"})
    assert hits and {h.product["articleType"] for h in hits} == {"Wallets"}
    assert len(hits) == sum(r["articleType"] == "Wallets" for r in shop[1])
    either = index.search("black", k=50, where={"articleType": ["Wallets", "Watches"]})
    assert {h.product["articleType"] for h in either} == {"Wallets", "Watches"}
    cheap = index.search("black", k=50, price=(10, 40))
    assert cheap and all(10 <= float(h.product["price"]) <= 40 for h in cheap)
    assert len(cheap) == sum(10 <= float(r["price"]) <= 40 for r in shop[1])
    alike = index.similar(id=shop[1][0]["id"], k=50, where={"articleType": "Tshirts"})
    assert alike and {h.product["articleType"] for h in alike} == {"Tshirts"}


def test_check_filters_refuses_what_search_would_before_searching(index):
    index.check_filters(where={"articleType": "Wallets"}, price=(10, None))  # fine: nothing raised
    index.check_filters()
    with pytest.raises(vitrina.QueryError, match="colour") as raised:
        index.check_filters(where={"colour": "Black"})  # the catalog has no such column
    with pytest.raises(vitrina.QueryError) as searched:
        index.search("black", where={"colour": "Black"})
    assert str(raised.value) == str(searched.value)


def test_manifest_of_reads_a_root_or_a_directory_without_opening_it(root, index):
    manifest = vitrina.Index.manifest_of(root)
    assert isinstance(manifest, vitrina.IndexManifest) and manifest.to_json() == index.info().to_json()
    assert vitrina.Index.manifest_of(resolve_index_path(root)).version == manifest.version
    with pytest.raises(vitrina.IndexStoreError):
        vitrina.Index.manifest_of(root / "nothing-here")


def test_similar_by_id_path_pil_and_bytes(index, shop):
    catalog, rows = shop
    first = rows[0]["id"]
    by_id = index.similar(id=first, k=5)
    assert len(by_id) == 5 and first not in [h.id for h in by_id]
    photo = catalog.parent / rows[0]["image"]
    by_path = index.similar(image=str(photo), k=5)
    by_pathlib = index.similar(image=photo, k=5)
    by_pil = index.similar(image=Image.open(photo), k=5)
    by_bytes = index.similar(image=photo.read_bytes(), k=5)
    ids = [h.id for h in by_path]
    assert ids[0] == first  # the photo of a catalog product finds that product first
    assert [h.id for h in by_pathlib] == [h.id for h in by_pil] == [h.id for h in by_bytes] == ids
    batch = index.similar(image=[photo, photo.read_bytes()], k=5)
    assert [[h.id for h in hits] for hits in batch] == [ids, ids]
    rgba = Image.open(photo).convert("RGBA")  # not RGB: converted
    assert index.similar(image=rgba, k=1)[0].id == first


def test_missing_or_unreadable_photos_are_vitrina_errors(index, tmp_path):
    with pytest.raises(vitrina.ImageLoadError) as missing:
        index.similar(image=tmp_path / "nope.jpg")
    assert isinstance(missing.value, vitrina.VitrinaError) and "nope.jpg" in str(missing.value)
    with pytest.raises(vitrina.ImageLoadError, match="not a readable image"):
        index.similar(image=b"not an image")


def test_wrong_arguments_are_argument_errors_worded_in_python_terms(index, tmp_path):
    with pytest.raises(vitrina.ArgumentError, match="^give id or image, not both and not neither$") as neither:
        index.similar()
    assert isinstance(neither.value, ValueError) and isinstance(neither.value, vitrina.QueryError)
    with pytest.raises(vitrina.ArgumentError, match="give id or image"):
        index.similar(id="1", image=b"x")
    with pytest.raises(vitrina.ArgumentError, match="^k must be a whole number, not str$"):
        index.search("shoes", k="5")
    with pytest.raises(vitrina.ArgumentError, match="^query must be a string or a non-empty list of strings"):
        index.search(42)
    with pytest.raises(vitrina.ArgumentError, match="^image must be a path, a URL, bytes or a PIL image, not int$"):
        index.similar(image=3)
    with pytest.raises(vitrina.ArgumentError, match="^ids must be a list of product ids$"):
        index.delete("15943")
    with pytest.raises(vitrina.ArgumentError, match=r"^text_fields must be a list of column names"):
        vitrina.Index.build([{"id": "1", "title": "x"}], tmp_path / "x", text_fields="title")
    with pytest.raises(vitrina.ArgumentError, match=r"^methods: unknown method 'bm42'"):
        qrels = write_csv(tmp_path / "q.csv", [{"query_id": "q", "query": "x", "product_id": "1", "relevance": "1"}])
        index.evaluate_text(qrels, methods=["bm42"])
    with pytest.raises(vitrina.QueryError, match="k must be between 1 and"):
        index.search("shoes", k=0)
    with pytest.raises(vitrina.IndexStoreError, match="unknown product id 'nope'"):
        index.similar(id="nope")
    with pytest.raises(vitrina.IndexStoreError):
        vitrina.Index.open(tmp_path / "no-index-here")


def test_build_from_records_with_an_id_field_and_open_as_plain(tmp_path, config, models):
    records = [{"sku": f"s{i}", "title": title, "price": 10 + i} for i, title in enumerate(
        ["red running shoes", "black leather wallet", "steel watch", "blue denim jeans", "white cotton shirt"])]
    built = vitrina.Index.build(records, tmp_path / "plain", id_field="sku", versioned=False, config=config,
                                text_model=models["text_model"], image_model="none")
    assert not built.versioned and (tmp_path / "plain" / "manifest.json").is_file()
    assert isinstance(built.build_report, vitrina.IndexReport)
    opened = vitrina.Index.open(tmp_path / "plain", config)
    assert len(opened) == 5 and opened.info().catalog["id_field"] == "sku"
    assert opened.search("leather wallet", k=1, mode="lexical")[0].id == "s1"
    assert opened.product("s1")["title"] == "black leather wallet" and opened.product("s1")["sku"] == "s1"
    import pandas

    frame = vitrina.Index.build(pandas.DataFrame(records), tmp_path / "frame", id_field="sku", config=config,
                                text_model=models["text_model"], image_model="none")
    assert frame.versioned and isinstance(frame.build_report, vitrina.ReindexReport) and len(frame) == 5


def write_sees_itself(index: vitrina.Index, new_row: dict, gone: str) -> None:
    """Upsert a product and delete another through `index`; its searches see both at once."""
    before = index.manifest.version
    report = index.upsert([new_row])
    assert isinstance(report, vitrina.UpdateReport) and report.added == 1 and report.encoded["text"] == 1
    assert index.versioned and index.manifest.version != before
    assert new_row["id"] in index and index.search("zebra", k=1, mode="lexical")[0].id == new_row["id"]
    changed = dict(new_row, title="zebra print running shoes")
    assert index.upsert([changed]).updated == 1
    assert index.product(new_row["id"])["title"] == "zebra print running shoes"
    report = index.delete([gone, "not-there"])
    assert report.deleted == 1 and report.not_found == ["not-there"]
    assert gone not in index and gone not in [h.id for h in index.search("shoes", k=50)]


def test_upsert_and_delete_on_a_versioned_root(tmp_path, shop, config, models):
    index = vitrina.Index.build(shop[0], tmp_path / "root", config=config, text_model=models["text_model"],
                                image_model="none")
    new_row = {"id": "900001", "title": "zebra print wallet", "articleType": "Wallets", "price": "12.50"}
    write_sees_itself(index, new_row, shop[1][1]["id"])
    assert vitrina.Index.open(tmp_path / "root", config).manifest.version == index.manifest.version


def test_upsert_of_a_product_without_a_photo_into_an_index_with_photos(tmp_path, shop, config, models):
    index = vitrina.Index.build(shop[0], tmp_path / "root", config=config, **models)
    report = index.upsert([{"id": "900003", "title": "zebra print wallet"}])
    assert report.added == 1 and index.search("zebra", k=1, mode="lexical")[0].id == "900003"
    assert "900003" not in [h.id for h in index.similar(id=shop[1][0]["id"], k=len(shop[1]))]  # no image vector


def test_upsert_and_delete_turn_a_plain_directory_into_a_versioned_root_in_place(tmp_path, shop, config, models):
    path = tmp_path / "plain"
    index = vitrina.Index.build(shop[0], path, versioned=False, config=config, text_model=models["text_model"],
                                image_model="none")
    lexical_before = [h.id for h in index.search("black leather", k=10, mode="lexical")]
    dense_before = [h.id for h in index.search("black leather", k=10, mode="dense")]
    code, _, err = run_cli("upsert", path, shop[0])  # the CLI's behaviour on plain directories is unchanged
    assert code == 1 and "is not a versioned index root" in err
    index.make_versioned()
    assert is_versioned_root(path) and (path / CURRENT).is_symlink() and not (path / "manifest.json").exists()
    # the first version is the plain index as it was: same answers, texts recorded for upserts
    assert [h.id for h in index.search("black leather", k=10, mode="lexical")] == lexical_before
    assert [h.id for h in index.search("black leather", k=10, mode="dense")] == dense_before
    again = index.upsert(shop[0])
    assert again.unchanged == len(shop[1]) and again.encoded == {"text": 0, "image": 0}
    new_row = {"id": "900002", "title": "zebra leather wallet", "articleType": "Wallets", "price": "9"}
    write_sees_itself(index, new_row, shop[1][2]["id"])
    code, out, err = run_cli("search", path, "zebra", "--json", "--mode", "lexical")  # the CLI reads the root
    assert code == 0, err
    assert json.loads(out)["results"][0]["id"] == "900002"


def test_a_plain_directory_with_events_keeps_them_as_the_roots_log(tmp_path, shop, config, models):
    path = tmp_path / "plain"
    index = vitrina.Index.build(shop[0], path, versioned=False, config=config, text_model=models["text_model"],
                                image_model="none")
    ids = [r["id"] for r in shop[1]]
    index.add_events(events_for(ids), settings=vitrina.BehaviourConfig(factors=2, iterations=5))
    assert (path / "events").is_dir()
    bought = {e["product_id"] for e in events_for(ids) if e["user_id"] == "u1"}
    assert not bought & {h.id for h in index.recommend("u1", k=len(ids))}  # personalised: what u1 has is left out
    index.delete([ids[-1]])
    assert is_versioned_root(path) and (path / "events").is_dir() and not (resolve_index_path(path) / "events").exists()
    after = {h.id for h in index.recommend("u1", k=len(ids))}
    assert after and ids[-1] not in after and not bought & after  # still u1's: the log and vectors came along


def events_for(ids: list[str]) -> list[dict]:
    """Shoppers u0-u5 each buying a few of the products, and viewing others."""
    events = []
    for u in range(6):
        for j, pid in enumerate(ids[u::6][:4]):
            events.append({"user_id": f"u{u}", "product_id": pid, "event": "purchase" if j % 2 else "view",
                           "timestamp": f"2024-02-{1 + j:02d}T10:00:00Z"})
    return events


def test_add_events_from_records_a_frame_or_a_file_then_recommend(tmp_path, shop, config, models):
    index = vitrina.Index.build(shop[0], tmp_path / "root", config=config, text_model=models["text_model"],
                                image_model="none")
    with pytest.raises(vitrina.QueryError):
        index.recommend("u1")  # no events yet
    ids = [r["id"] for r in shop[1]]
    events = events_for(ids)
    settings = vitrina.BehaviourConfig(factors=2, iterations=5)
    added = index.add_events(events + [{"user_id": "u9", "product_id": "nope", "event": "view",
                                        "timestamp": "2024-01-01"}], settings=settings)
    assert added.report.events == len(events) and added.problems.counts == {"unknown product": 1}
    assert "events[" in added.problems.summary()
    assert index.add_events(events).duplicates == len(events)  # applied once
    import pandas

    more = [dict(e, timestamp="2024-03-01T10:00:00Z") for e in events[:3]]
    assert index.add_events(pandas.DataFrame(more)).report.events == 3
    file_events = [dict(e, timestamp="2024-03-02T10:00:00Z") for e in events[:2]]
    assert index.add_events(write_csv(tmp_path / "events.csv", file_events)).report.events == 2
    bought = {e["product_id"] for e in events if e["user_id"] == "u1"}
    picks = index.recommend("u1", k=5)
    assert len(picks) == 5 and not bought & {h.id for h in picks}
    assert bought <= {h.id for h in index.recommend("u1", k=len(ids), include_seen=True)}
    assert picks.personalised is True and isinstance(picks, vitrina.Hits)
    popular = index.recommend("stranger", k=3)
    assert len(popular) == 3 and popular.personalised is False  # the best sellers
    for_u1 = index.search("leather wallet", k=4, user="u1")
    assert for_u1.personalised is True and len(for_u1) == 4
    plain = index.search("leather wallet", k=4, user="stranger")
    assert plain.personalised is False
    assert [h.id for h in plain] == [h.id for h in index.search("leather wallet", k=4)]
    assert [h.personalised for h in index.search(["wallet", "watch"], k=2, user="u1")] == [True, True]
    with pytest.raises(vitrina.QueryError, match="k must be between"):
        index.search("", k=0, user="u1")  # a shopper's search checks k before the query
    gone = index.forget("u1")
    assert gone.found and gone.events_removed == sum(e["user_id"] == "u1" for e in events)
    assert index.search("leather wallet", k=4, user="u1").personalised is False  # the object sees its own write
    assert index.recommend("u1", k=3).personalised is False and not index.forget("u1").found


def test_train_then_search_uses_the_fused_space(tmp_path, shop, config, models):
    index = vitrina.Index.build(shop[0], tmp_path / "root", config=config, **models)
    report = index.train(dim=8, epochs=2)
    assert isinstance(report, vitrina.TrainReport) and report.epochs_run >= 1
    assert report.dim == 8 and any("behaviour" in note for note in report.notes)  # no events: a note says so
    assert {"fused", "shared-image"} <= set(index.info().spaces)
    hits = index.search("steel watch", k=3, mode="dense")
    assert len(hits) == 3
    assert [h.id for h in hits] == [h.id for h in index.search("steel watch", k=3, mode="dense", space="fused")]


def test_evaluate_text_on_judged_queries(index, shop, tmp_path):
    judged = [{"query_id": kind, "query": kind.lower(), "product_id": r["id"], "relevance": "1"}
              for kind in TYPES for r in shop[1] if r["articleType"] == kind]
    evaluation = index.evaluate_text(write_csv(tmp_path / "qrels.csv", judged), k=5)
    assert isinstance(evaluation, vitrina.Evaluation)
    summary = evaluation.to_json()
    assert summary["queries"] == len(TYPES) and set(summary["methods"]) == {"lexical", "dense", "hybrid"}
    assert summary["methods"]["lexical"]["recall@5"] > 0  # the type's name is in the titles
    only = index.evaluate_text(write_csv(tmp_path / "qrels.csv", judged), methods=["lexical"])
    assert set(only.to_json()["methods"]) == {"lexical"}
    with pytest.raises(vitrina.ArgumentError, match="unknown method 'bm25'"):  # checked before the file is read
        index.evaluate_text(tmp_path / "no-such-file.csv", methods=["bm25"])
    page = index.write_report(only, tmp_path / "report" / "text.html")
    assert page == tmp_path / "report" / "text.html" and "<html" in page.read_text(encoding="utf-8").lower()


def test_evaluate_image_and_cross_modal(index):
    by_type = index.evaluate_image("articleType", k=5, queries=8, seed=1).to_json()
    assert by_type["kind"] == "image" and by_type["queries"] == 8 and list(by_type["methods"]) == ["dense"]
    again = index.evaluate_image("articleType", k=5, queries=8, seed=1).to_json()["methods"]["dense"]
    assert {**again, "seconds": 0} == {**by_type["methods"]["dense"], "seconds": 0}  # the same sample, the same scores
    with pytest.raises(vitrina.VitrinaError):
        index.evaluate_cross_modal(k=5)  # untrained, no CLIP text tower: nothing can put words and pictures together


def test_error_messages_are_worded_for_each_front_end():
    error = vitrina.QueryError("{mode} needs a lexical index, and this one has none; re-index the catalog",
                               mode=Param("mode", "hybrid"))
    assert str(error) == "mode='hybrid' needs a lexical index, and this one has none; re-index the catalog"
    assert error.worded(CLI) == "--mode hybrid needs a lexical index, and this one has none; re-index the catalog"
    assert worded(error, HTTP) == "mode=hybrid needs a lexical index, and this one has none; re-index the catalog"
    named = vitrina.CatalogError("{path}: no id field {name!r}; set {id_field}", path="/x/{a}.csv", name="sku",
                                 id_field=Param("id_field"))
    assert str(named) == "/x/{a}.csv: no id field 'sku'; set id_field"
    assert named.worded(CLI) == "/x/{a}.csv: no id field 'sku'; set --id-field"
    assert named.worded(CLI.with_names(id_field="--id-column")) == "/x/{a}.csv: no id field 'sku'; set --id-column"
    assert vitrina.IndexStoreError("a {plain} message").worded(CLI) == "a {plain} message"  # no fields: as written
    assert worded(ValueError("other"), CLI) == "other"
    # today's CLI messages come out byte for byte once written with placeholders
    words = vitrina.QueryError("{mode} needs words, and {space} searches pictures; use {dense}",
                               mode=Param("mode", "lexical"), space=Param("space", "image"), dense=Param("mode", "dense"))
    assert words.worded(CLI) == "--mode lexical needs words, and --space image searches pictures; use --mode dense"
    assert str(words) == "mode='lexical' needs words, and space='image' searches pictures; use mode='dense'"
    where = vitrina.IndexStoreError("{root} is a file, not a directory", root=Param("root", "/srv/idx"))
    assert where.worded(CLI.with_names(root="--out")) == "--out /srv/idx is a file, not a directory"
    assert str(where) == "root='/srv/idx' is a file, not a directory"
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is vitrina.QueryError and copy.worded(CLI) == error.worded(CLI) and str(copy) == str(error)
    assert PYTHON(Param("k", 3)) == "k=3" and Wording()(Param("k")) == "k"
    for kind in (vitrina.CatalogError, vitrina.QueryError, vitrina.ArgumentError, vitrina.EncoderError,
                 vitrina.ImageLoadError, vitrina.IndexStoreError):
        assert issubclass(kind, vitrina.VitrinaError)


def test_importing_vitrina_loads_no_model_library():
    script = ("import sys, vitrina; heavy = ('torch', 'transformers', 'open_clip', 'onnxruntime'); "
              "print([m for m in heavy if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_curated_surface():
    assert {"Index", "SearchHit", "Hits", "VitrinaConfig", "CatalogConfig", "EncoderConfig", "IndexConfig", "ImageConfig",
            "VitrinaError", "DEMO_CATALOG", "__version__", "UpdateReport", "TrainConfig"} <= set(vitrina.__all__)
    for name in vitrina.__all__:
        assert getattr(vitrina, name) is not None, name
    assert vitrina.DEMO_CATALOG.is_file() and vitrina.__version__
    assert len(set(vitrina.__all__)) == len(vitrina.__all__)
    with pytest.raises(AttributeError):
        vitrina.NoSuchThing  # noqa: B018
