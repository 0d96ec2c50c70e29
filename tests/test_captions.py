"""Neighbour captions (engine.learn.captions): a photo described by the texts of the anchor photos it looks
like, joined to the image head's input by `vitrina train --captions`, for stored photos and uploads alike."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vitrina.encoders.base import l2_normalize
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.splits import heldout_bucket
from vitrina.engine.errors import QueryError
from vitrina.engine.learn.captions import CAPTIONS_FILE, CAPTIONS_STATE, NeighbourCaptions, anchor_captions
from vitrina.engine.learn.colour_vectors import colour_join, colour_of_rows
from vitrina.engine.learn.fusion import FUSION_DIR, FusionModel
from vitrina.engine.learn.shared_space import TrainConfig, train_heads, training_captions
from vitrina.engine.query.search import SearchSession
from vitrina.index import IndexDirectory
from tests.helpers import run_cli
from tests.test_colour_index import HELDOUT, bag_of_words, colour_catalog, colour_index  # noqa: F401 (fixtures)


def anchors(n: int = 6, image_dim: int = 5, text_dim: int = 4) -> NeighbourCaptions:
    rng = np.random.default_rng(0)
    return NeighbourCaptions([f"a{i}" for i in range(n)], l2_normalize(rng.normal(size=(n, image_dim))),
                             l2_normalize(rng.normal(size=(n, text_dim))), neighbours=1, temperature=0.02, factor=2.0)


def test_a_caption_is_the_text_of_the_photo_it_looks_most_like_and_never_its_own():
    captions = anchors()
    photos = captions.images[[3, 1]] * 7.0  # any norm: cosines decide
    assert np.allclose(captions.describe(photos), captions.texts[[3, 1]], atol=1e-6)
    mine = captions.describe(photos, ["a3", "other"])  # anchor a3's own photo: its nearest other anchor instead
    second = np.argsort(-(captions.images[3] @ captions.images.T))[1]
    assert np.allclose(mine[0], captions.texts[second], atol=1e-6) and np.allclose(mine[1], captions.texts[1], atol=1e-6)
    joined = captions.join(np.ones((2, 3), np.float32), photos)
    assert joined.shape == (2, 3 + 4) and np.allclose(joined[:, 3:], 2.0 * captions.texts[[3, 1]], atol=1e-6)


def test_a_caption_blends_its_neighbours_by_their_similarity():
    images = l2_normalize(np.array([[1, 0], [0.9, 0.1], [0, 1]], np.float32))
    texts = np.eye(3, dtype=np.float32)
    captions = NeighbourCaptions(["x", "y", "z"], images, texts, neighbours=2, temperature=1.0)
    caption = captions.describe(np.array([[1.0, 0.0]]))[0]
    assert caption[0] > caption[1] > 0 and caption[2] == 0  # the two nearest, the nearer weighing more
    with pytest.raises(QueryError, match="2-d image vectors"):
        captions.describe(np.ones((1, 3)))


def test_captions_save_and_load_and_refuse_damage(tmp_path):
    captions = anchors()
    captions.save(tmp_path)
    loaded = NeighbourCaptions.load(tmp_path)
    assert loaded.ids == captions.ids and loaded.fingerprint == captions.fingerprint
    assert np.allclose(loaded.texts, captions.texts, atol=1e-3)  # stored as float16
    (tmp_path / "none").mkdir()
    assert NeighbourCaptions.load(tmp_path / "none") is None  # heads trained without captions
    state = json.loads((tmp_path / CAPTIONS_STATE).read_text())
    (tmp_path / CAPTIONS_STATE).write_text(json.dumps({**state, "neighbours": 5}))
    with pytest.raises(QueryError, match="do not match"):
        NeighbourCaptions.load(tmp_path)
    (tmp_path / CAPTIONS_FILE).write_bytes(b"not an npz")
    with pytest.raises(QueryError, match="damaged"):
        NeighbourCaptions.load(tmp_path)


def test_anchors_are_sampled_when_there_are_too_many_and_off_at_scale_zero():
    rng = np.random.default_rng(1)
    ids, cnn, texts = [f"p{i}" for i in range(50)], rng.normal(size=(50, 6)), rng.normal(size=(50, 3))
    made = anchor_captions(ids, cnn, texts, np.arange(40), scale=1.5, neighbours=3, temperature=0.1, max_anchors=10)
    assert len(made.ids) == 10 and set(made.ids) <= {f"p{i}" for i in range(40)}
    assert made.factor == pytest.approx(1.5 * np.linalg.norm(cnn[[int(i[1:]) for i in made.ids]], axis=1).mean(), rel=1e-5)
    assert anchor_captions(ids, cnn, texts, np.arange(40), scale=0, neighbours=3, temperature=0.1, max_anchors=10) is None
    with pytest.raises(QueryError, match="captions"):
        TrainConfig(captions=-1)
    with pytest.raises(QueryError, match="schedule"):
        TrainConfig(schedule="linear")
    assert TrainConfig().schedule == "cosine" and TrainConfig(schedule="constant").schedule == "constant"


def test_captions_help_held_out_titles_find_their_photos():
    """Held-out products' titles against every photo: heads reading neighbour captions find more photos of the
    same colour and kind than the same heads without. The photos' vectors here cluster by (colour, kind) in a
    space too small for a linear head to tell 64 clusters apart, as a frozen CNN's often are for a catalog's
    words; the neighbours still know them. Titles are bags of words (the tiny test BERT gives titles one vector)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 8, 6))
    ids, titles, images = [], [], []
    for c in range(8):
        for k in range(8):
            for v in range(4):
                ids.append(f"p{c}-{k}-{v}")
                titles.append(f"colour{c} kind{k}")
                images.append(centres[c, k] + 0.05 * rng.normal(size=6))
    images, text = np.asarray(images, np.float32), bag_of_words(titles)
    rows = np.arange(len(ids))
    held = np.array([r for r, pid in enumerate(ids) if heldout_bucket(pid) < HELDOUT])
    scores = {}
    for scale in (0.0, 2.0):
        settings = TrainConfig(dim=32, epochs=60, batch_size=32, heldout=HELDOUT, colour=0.0, captions=scale)
        train = np.array([heldout_bucket(p) >= HELDOUT + settings.validation for p in ids])
        captions = anchor_captions(ids, images, text, np.flatnonzero(train), scale=scale, neighbours=3,
                                   temperature=0.05, max_anchors=1000)
        assert (captions is None) == (scale == 0)
        inputs = {"text": (text, rows), "image": (images if captions is None else captions.join(images, images, ids), rows)}
        model, _ = train_heads(inputs, {"text": "bow", "image": "clusters"}, ids, settings, progress=False,
                               captions=captions)
        assert (model.captions is None) == (scale == 0)
        top = np.argsort(-(model.project("text", text[held]) @ model.project("image", inputs["image"][0]).T), axis=1)[:, :5]
        scores[scale] = np.mean([[titles[x] == titles[r] for x in t] for r, t in zip(held, top)])
    assert scores[2.0] > scores[0.0] + 0.3 and scores[2.0] > 0.5, scores  # at most 0.8: 4 photos a title


def test_train_joins_captions_for_stored_photos_uploads_and_evaluation(colour_index, colour_catalog, tmp_path):  # noqa: F811
    code, out, err = run_cli("train", colour_index, "--heldout", str(HELDOUT), "--epochs", "3", "--dim", "16",
                             "--captions", "2", "--json", "-q")
    assert code == 0, err
    model = FusionModel.load(colour_index / FUSION_DIR)
    directory = IndexDirectory.load(colour_index)
    assert model.captions is not None and model.colour is not None
    text_dim, image_dim = directory.manifest.spaces["text"].dim, directory.manifest.spaces["image"].dim
    assert model.heads["image"][0].shape[0] == image_dim + model.colour.config.dim + text_dim
    ids = directory.products.ids
    assert not {p for p in model.captions.ids if heldout_bucket(p) < HELDOUT + 0.1}  # anchors: trained-on products only
    assert training_captions(directory, TrainConfig(heldout=HELDOUT, captions=0)) is None
    held = next(p for p in ids if heldout_bucket(p) < HELDOUT)  # not an anchor: stored and uploaded photo agree
    row = directory.products.row_of(held)
    cnn = directory.spaces["image"].vector_of_row(row)[None]
    stored_colour, _ = colour_of_rows(directory, np.array([row]))
    expected = model.project("image", model.image_inputs(cnn, stored_colour, [held]))
    assert np.allclose(directory.spaces["shared-image"].vector_of_row(row), expected[0], atol=1e-5)
    session = SearchSession(colour_index, VitrinaConfig(progress=False))
    photo_path = colour_catalog.parent / "images" / f"{held}.png"
    uploaded = session.encode_images([Image.open(photo_path).convert("RGB")], "fused")
    assert np.allclose(uploaded, model.fused_query("image", model.image_inputs(cnn, stored_colour)), atol=1e-3)
    anchor = model.captions.ids[0]  # an anchor's stored photo: its caption made without its own text
    arow = directory.products.row_of(anchor)
    acnn = directory.spaces["image"].vector_of_row(arow)[None]
    acolour, _ = colour_of_rows(directory, np.array([arow]))
    expected = model.project("image", model.image_inputs(acnn, acolour, [anchor]))
    assert np.allclose(directory.spaces["shared-image"].vector_of_row(arow), expected[0], atol=1e-5)
    for command in (("similar", colour_index, "--image", photo_path, "--json", "-k", "3"),
                    ("search", colour_index, "red shoes", "--space", "fused", "--json", "-k", "3"),
                    ("eval", "cross-modal", colour_index, "--json", "-q"),
                    ("eval", "image", colour_index, "--label-field", "title", "--space", "fused", "--json", "-q")):
        code, out, err = run_cli(*command)
        assert code == 0, (command, err)
        assert json.loads(out)
    code, out, err = run_cli("train", colour_index, "--captions", "-1", "-q")
    assert code != 0 and "captions" in err and "Traceback" not in err
    colour_join(directory, 1.0)  # the index itself is untouched by a refused run
    assert FusionModel.load(colour_index / FUSION_DIR).captions is not None
