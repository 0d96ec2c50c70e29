"""Colour descriptors stored per photo at index time ("colour" space), reused on re-index, carried by
upsert, joined to the image vectors by `vitrina train`, and computed for uploaded photos too."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vitrina.encoders.colour import COLOUR_SPACE, ColourConfig, colour_descriptor
from vitrina.engine.build.reindex import ReindexConfig, reindex
from vitrina.engine.build.updates import upsert
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.splits import heldout_bucket
from vitrina.engine.errors import QueryError
from vitrina.engine.learn.colour_vectors import colour_join, colour_of_rows, stored_colour
from vitrina.engine.learn.fusion import FUSION_DIR, FusionModel
from vitrina.engine.learn.shared_space import TrainConfig, apply_shared_space, modality_inputs, train_heads
from vitrina.engine.query.search import SearchSession
from vitrina.index import IndexDirectory, IndexManifest
from vitrina.index.store import editing, remove_space, write_manifest
from vitrina.index.versions import resolve_index_path
from tests.helpers import run_cli, write_csv

COLOURS = {"red": (200, 30, 35), "blue": (30, 60, 200), "black": (20, 20, 20), "green": (40, 160, 60),
           "yellow": (235, 210, 40), "orange": (240, 130, 30), "purple": (130, 50, 160), "pink": (240, 150, 190)}
KINDS = ("shirt", "shoes", "boots", "dress", "watch", "wallet", "bag", "jeans")
HELDOUT = 0.3


def photo(colour: tuple[int, int, int], kind: int, variant: int) -> Image.Image:
    """A product of one colour on a white backdrop, under a strong random texture (what the CNN sees most):
    its outline depends on the kind, its place, size and texture on the variant."""
    rng = np.random.default_rng(1000 * kind + variant + 7 * sum(colour))
    mask = Image.new("L", (64, 64), 0)
    x, y, size = (int(v) for v in rng.integers((2, 2, 24), (20, 20, 40)))
    (ImageDraw.Draw(mask).ellipse if kind % 2 else ImageDraw.Draw(mask).rectangle)((x, y, x + size, y + size // 2 + 3 * kind), fill=255)
    shade = rng.uniform(0.7, 1.0, size=(64, 64, 1))  # texture: brightness varies pixel to pixel
    pixels = np.where(np.asarray(mask)[..., None] > 0, np.asarray(colour) * shade, 255.0)
    return Image.fromarray(pixels.astype(np.uint8))


@pytest.fixture(scope="module")
def colour_catalog(tmp_path_factory) -> Path:
    """128 products: 8 colours x 8 kinds x 2 placements, titled "{colour} {kind}"."""
    folder = tmp_path_factory.mktemp("colour-catalog")
    (folder / "images").mkdir()
    rows = []
    for c, (name, rgb) in enumerate(COLOURS.items()):
        for k, kind in enumerate(KINDS):
            for v in range(2):
                pid = f"p{c}-{k}-{v}"
                photo(rgb, k, v).save(folder / "images" / f"{pid}.png")
                rows.append({"id": pid, "title": f"{name} {kind}", "image": f"images/{pid}.png"})
    return write_csv(folder / "products.csv", rows)


@pytest.fixture(scope="module")
def colour_index(colour_catalog, tiny_bert_dir, tiny_resnet_weights, tmp_path_factory) -> Path:
    index = tmp_path_factory.mktemp("colour-index") / "idx"
    code, _, err = run_cli("index", colour_catalog, "--out", index, "--text-model", tiny_bert_dir,
                           "--image-model", f"resnet18={tiny_resnet_weights}", "--index-factory", "Flat", "-q")
    assert code == 0, err
    return index


def test_the_index_stores_one_descriptor_per_photo_from_the_decoded_photo(colour_index, colour_catalog):
    directory = IndexDirectory.load(colour_index)
    info = directory.manifest.spaces[COLOUR_SPACE]
    assert info.encoder == ColourConfig().name and info.dim == ColourConfig().dim and info.count == 128
    vectors, rows, config = stored_colour(directory)
    assert np.array_equal(rows, directory.spaces["image"].rows) and config == ColourConfig()
    row = directory.products.row_of("p0-3-1")
    expected = colour_descriptor(Image.open(colour_catalog.parent / "images" / "p0-3-1.png"))
    found, mask = colour_of_rows(directory, np.array([row]))
    assert mask.all() and np.allclose(found[0], expected, atol=1e-6)


def bag_of_words(titles: list[str]) -> np.ndarray:
    """Title vectors that name their words (the tiny test BERT gives every title nearly the same vector)."""
    words = sorted({w for t in titles for w in t.split()})
    out = np.zeros((len(titles), len(words)), np.float32)
    for i, title in enumerate(titles):
        out[i, [words.index(w) for w in title.split()]] = 1.0
    return out


def test_heads_with_colour_find_held_out_products_by_colour_better_than_without(colour_index):
    directory = IndexDirectory.load(colour_index)
    ids = directory.products.ids
    titles = [directory.products.metadata(r)["title"] for r in range(len(ids))]
    text = bag_of_words(titles)
    held = np.array([r for r, pid in enumerate(ids) if heldout_bucket(pid) < HELDOUT])
    scores = {}
    for scale in (0.0, 1.0):
        colour = colour_join(directory, scale)
        inputs, sources = modality_inputs(directory, None, colour)
        inputs["text"] = (text, np.arange(len(ids)))
        settings = TrainConfig(dim=32, epochs=40, batch_size=32, heldout=HELDOUT, colour=scale)
        model, _ = train_heads(inputs, sources, ids, settings, progress=False, colour=colour)
        assert (model.colour is None) == (scale == 0)
        gallery, rows = model.project("image", inputs["image"][0]), inputs["image"][1]
        top = rows[np.argsort(-(model.project("text", text[held]) @ gallery.T), axis=1)[:, :5]]
        own = np.mean([r in t for r, t in zip(held, top)])  # the product's own photo in the top 5
        same_colour = np.mean([[ids[x].split("-")[0] == ids[r].split("-")[0] for x in t] for r, t in zip(held, top)])
        scores[scale] = (own, same_colour)
    assert scores[1.0][1] > scores[0.0][1] + 0.1 and scores[1.0][1] > 0.9, scores
    assert scores[1.0][0] > scores[0.0][0], scores


def test_train_joins_colour_everywhere_an_image_is_projected(colour_index, colour_catalog, tmp_path):
    code, out, err = run_cli("train", colour_index, "--heldout", str(HELDOUT), "--epochs", "3", "--dim", "16",
                             "--captions", "0", "--json", "-q")  # colour alone (test_captions: both)
    assert code == 0, err
    model = FusionModel.load(colour_index / FUSION_DIR)
    assert model.colour is not None and model.colour.descriptor == ColourConfig().name and model.captions is None
    assert model.colour.factor == pytest.approx(1.0)  # the default scale x the (unit) norm of the CNN vectors
    directory = IndexDirectory.load(colour_index)
    assert model.heads["image"][0].shape[0] == directory.manifest.spaces["image"].dim + ColourConfig().dim
    row = directory.products.row_of("p2-5-0")
    cnn = directory.spaces["image"].vector_of_row(row)[None]
    stored, _ = colour_of_rows(directory, np.array([row]))
    expected = model.project("image", model.colour.join(cnn, stored))
    assert np.allclose(directory.spaces["shared-image"].vector_of_row(row), expected[0], atol=1e-5)  # stored products
    session = SearchSession(colour_index, VitrinaConfig(progress=False))
    photo_path = colour_catalog.parent / "images" / "p2-5-0.png"
    uploaded = session.encode_images([Image.open(photo_path).convert("RGB")], "fused")  # uploads: descriptor of the photo
    assert np.allclose(uploaded, model.fused_query("image", model.colour.join(cnn, stored)), atol=1e-4)
    code, out, err = run_cli("similar", colour_index, "--image", photo_path, "--json", "-k", "3")
    assert code == 0, err
    assert json.loads(out)["results"]
    code, out, err = run_cli("eval", "image", colour_index, "--label-field", "title", "--space", "fused", "--json", "-q")
    assert code == 0, err
    with pytest.raises(QueryError, match="colour descriptors"):
        model.image_inputs(cnn, None)


def without_colour(index: Path, copy: Path) -> Path:
    """A copy of `index` as indexes built before colour descriptors are (no "colour" space)."""
    shutil.copytree(index, copy)
    with editing(copy) as tmp:
        manifest = IndexManifest.load(tmp)
        remove_space(tmp, COLOUR_SPACE)
        del manifest.spaces[COLOUR_SPACE]
        write_manifest(tmp, manifest)
    return copy


def test_an_index_without_colour_still_trains_searches_and_takes_colour_heads(colour_index, colour_catalog, tmp_path):
    old = without_colour(colour_index, tmp_path / "old")
    assert stored_colour(IndexDirectory.load(old)) is None
    code, out, err = run_cli("train", old, "--epochs", "2", "--dim", "8", "--json", "-q")
    assert code == 0, err
    assert any("without colour descriptors" in note for note in json.loads(out)["notes"])
    assert FusionModel.load(old / FUSION_DIR).colour is None
    photo_path = colour_catalog.parent / "images" / "p1-1-1.png"
    for args in (("search", old, "red shirt"), ("similar", old, "--image", photo_path), ("similar", old, "--id", "p1-1-1")):
        code, out, err = run_cli(*args, "--json")
        assert code == 0 and json.loads(out)["results"], err
    # heads trained with colour, put into an index without descriptors: its images are left out, with the reason
    code, _, err = run_cli("train", colour_index, "--epochs", "2", "--dim", "8", "-q")
    assert code == 0, err
    other = without_colour(colour_index, tmp_path / "other")
    notes = apply_shared_space(other, FusionModel.load(colour_index / FUSION_DIR), VitrinaConfig(progress=False))
    assert any("colour descriptors this index does not store" in note for note in notes), notes
    assert "shared-image" not in IndexManifest.load(other).spaces and "fused" in IndexManifest.load(other).spaces
    code, out, err = run_cli("similar", other, "--image", photo_path, "--json")  # the upload brings its own colour
    assert code == 0 and json.loads(out)["results"], err


def test_reindex_adds_descriptors_to_an_old_root_reusing_its_image_vectors(colour_catalog, tiny_bert_dir,
                                                                        tiny_resnet_weights, tmp_path):
    config = VitrinaConfig(text_model=str(tiny_bert_dir), image_model=f"resnet18={tiny_resnet_weights}", progress=False)
    root = tmp_path / "root"
    first = reindex(colour_catalog, root, config, ReindexConfig(shard_size=50))
    assert first.encoded == {"text": 128, "image": 128}
    live = resolve_index_path(root)
    before = np.array(IndexDirectory.load(live).spaces[COLOUR_SPACE].vectors)
    with editing(live) as tmp:  # as a version written before colour descriptors
        manifest = IndexManifest.load(tmp)
        remove_space(tmp, COLOUR_SPACE)
        del manifest.spaces[COLOUR_SPACE]
        write_manifest(tmp, manifest)
    assert COLOUR_SPACE not in IndexManifest.load(resolve_index_path(root)).spaces
    again = reindex(colour_catalog, root, config, ReindexConfig(shard_size=50))
    assert again.encoded == {"text": 0, "image": 0} and again.reused == {"text": 128, "image": 128}
    y = IndexDirectory.load(again.path)
    assert np.array_equal(before, np.asarray(y.spaces[COLOUR_SPACE].vectors))  # computed again, from the same photos
    assert np.array_equal(y.spaces[COLOUR_SPACE].rows, y.spaces["image"].rows)
    # upsert: a changed photo gets a new descriptor, the others are kept; delete keeps rows aligned
    rows = list(csv.DictReader(colour_catalog.open()))
    changed = dict(rows[0], image=rows[40]["image"])  # p0-0-0 now shows another product's photo
    upserted = upsert(root, write_csv(colour_catalog.parent / "change.csv", [changed]), config)
    assert upserted.encoded == {"text": 0, "image": 1}
    z = IndexDirectory.load(root)
    row = z.products.row_of(rows[0]["id"])
    assert np.allclose(colour_of_rows(z, np.array([row]))[0][0],
                       colour_descriptor(Image.open(colour_catalog.parent / rows[40]["image"])), atol=1e-6)
    assert np.array_equal(z.spaces[COLOUR_SPACE].rows, z.spaces["image"].rows)
    assert z.manifest.spaces[COLOUR_SPACE].count == 128
