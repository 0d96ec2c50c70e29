"""The shared space: heads learned by InfoNCE, fused vectors (missing modalities, never NaN), the
`train` command, `--space` on search and similar, `index --fusion-from`, and events refreshing it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vitrina.engine.errors import QueryError
from vitrina.engine.learn.fusion import FusionModel, FusionWeights, shared_vectors
from vitrina.engine.learn.shared_space import TrainConfig, train_heads
from vitrina.index import IndexManifest
from tests.helpers import demo_catalog, demo_rows, run_cli, write_csv


def aligned_modalities(n: int = 600, seed: int = 0):
    """Texts and images that are two different noisy linear views of the same hidden product factors."""
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(n, 16))
    text = hidden @ rng.normal(size=(16, 48)) + 0.3 * rng.normal(size=(n, 48))
    image = hidden @ rng.normal(size=(16, 64)) + 0.3 * rng.normal(size=(n, 64))
    rows = np.arange(n)
    return {"text": (text.astype(np.float32), rows), "image": (image.astype(np.float32), rows)}, [f"p{i}" for i in rows]


def text_to_image_recall(model: FusionModel, inputs, rows: np.ndarray, k: int = 10) -> float:
    queries = model.project("text", inputs["text"][0][rows])
    gallery = model.project("image", inputs["image"][0])
    scores = queries @ gallery.T
    own = scores[np.arange(len(rows)), rows]
    return float(((scores > own[:, None]).sum(1) < k).mean())


def test_heads_learn_to_align_text_and_image_on_products_never_trained_on():
    inputs, ids = aligned_modalities()
    settings = TrainConfig(dim=16, epochs=30, batch_size=64, heldout=0.25, validation=0.1)
    model, report = train_heads(inputs, {"text": "t", "image": "i"}, ids, settings, progress=False)
    from vitrina.engine.data.splits import heldout_bucket

    held = np.array([i for i, p in enumerate(ids) if heldout_bucket(p) < 0.25])
    assert report.heldout == len(held) > 100 and report.trained_on < len(ids) - len(held)
    untrained = FusionModel(16, {m: (np.random.default_rng(1).normal(size=(v.shape[1], 16)).astype(np.float32),
                                     np.zeros(16, np.float32)) for m, (v, _) in inputs.items()}, {})
    before, after = text_to_image_recall(untrained, inputs, held), text_to_image_recall(model, inputs, held)
    assert after > 0.5 and after > 5 * before  # chance is 10/600
    assert report.best_epoch >= 1 and report.validation_recall_at_10 is not None


def test_one_modality_is_refused():
    inputs, ids = aligned_modalities(50)
    with pytest.raises(QueryError, match="needs two modalities"):
        train_heads({"text": inputs["text"]}, {"text": "t"}, ids, progress=False)


def test_fused_vectors_blend_what_a_product_has_and_are_never_nan():
    rng = np.random.default_rng(0)
    heads = {"text": (rng.normal(size=(4, 3)).astype(np.float32), np.zeros(3, np.float32)),
             "image": (rng.normal(size=(5, 3)).astype(np.float32), np.zeros(3, np.float32))}
    model = FusionModel(3, heads, {"text": "t", "image": "i"}, FusionWeights(text=1.0, image=1.0), text_share=0.5)
    text = rng.normal(size=(3, 4)).astype(np.float32)
    image = rng.normal(size=(1, 5)).astype(np.float32)  # only product 1 has an image
    out = shared_vectors(model, 4, {"text": (text, np.array([0, 1, 2])), "image": (image, np.array([1]))})
    fused, rows = out["fused"]
    assert rows.tolist() == [0, 1, 2]  # product 3 has nothing: no fused vector at all
    assert np.isfinite(fused).all() and np.allclose(np.linalg.norm(fused, axis=1), 1.0)
    t, i = model.project("text", text), model.project("image", image)
    shared = (t[1] + i[0]) / np.linalg.norm(t[1] + i[0])
    expected = np.concatenate([np.sqrt(0.5) * text[1] / np.linalg.norm(text[1]), np.sqrt(0.5) * shared])
    assert np.allclose(fused[1], expected, atol=1e-5)
    assert np.allclose(fused[0][4:], np.sqrt(0.5) * t[0], atol=1e-5)  # text only: renormalised, not shrunk
    # a text query's inner product = text_share * text cosine + (1 - text_share) * shared cosine
    query = model.fused_query("text", text[:1])
    assert float(query[0] @ fused[0]) == pytest.approx(1.0, abs=1e-5)
    assert out["shared-image"][1].tolist() == [1]


def test_save_load_round_trip_and_damage(tmp_path):
    inputs, ids = aligned_modalities(80)
    model, _ = train_heads(inputs, {"text": "t", "image": "i"}, ids, TrainConfig(dim=8, epochs=2), progress=False)
    model.save(tmp_path / "fusion")
    loaded = FusionModel.load(tmp_path / "fusion")
    assert loaded.fingerprint == model.fingerprint and loaded.inputs == model.inputs
    assert np.allclose(loaded.project("text", inputs["text"][0][:3]), model.project("text", inputs["text"][0][:3]))
    np.savez(tmp_path / "fusion" / "heads.npz", **{"text.w": np.zeros((48, 8)), "text.b": np.zeros(8)})
    with pytest.raises(QueryError, match="damaged"):
        FusionModel.load(tmp_path / "fusion")
    with pytest.raises(QueryError, match="no trained shared space"):
        FusionModel.load(tmp_path / "nowhere" / "fusion")


@pytest.fixture(scope="module")
def trained_index(tiny_bert_dir, tiny_resnet_weights, tmp_path_factory):
    """A 40-product demo index with text and image vectors, trained by `vitrina train`."""
    base = tmp_path_factory.mktemp("shared")
    rows = demo_rows()[:40]
    catalog = demo_catalog(base / "catalog", rows)
    index = base / "idx"
    code, _, err = run_cli("index", catalog, "--out", index, "--text-model", tiny_bert_dir,
                           "--image-model", f"resnet18={tiny_resnet_weights}", "-q")
    assert code == 0, err
    untrained = (index / "manifest.json").read_text()
    code, out, err = run_cli("train", index, "--epochs", "3", "--dim", "8", "--json", "-q")
    assert code == 0, err
    return {"index": index, "catalog": catalog, "rows": rows, "report": json.loads(out), "untrained": untrained}


def test_train_command_writes_heads_and_fused_spaces(trained_index):
    index, report = trained_index["index"], trained_index["report"]
    assert report["modalities"] == ["text", "image"] and report["spaces"] == ["fused", "shared-image"]
    assert len(report["losses"]) == 3 and report["products"] == 40
    manifest = IndexManifest.load(index)
    assert {"text", "image", "fused", "shared-image"} <= set(manifest.spaces)
    assert manifest.spaces["fused"].count == 40 and manifest.spaces["fused"].encoder.startswith("fusion@")
    assert (index / "fusion" / "heads.npz").is_file()
    assert not [p for p in index.parent.iterdir() if p.name.startswith(".idx")]  # no temp directories left


def test_search_and_similar_default_to_the_fused_space(trained_index):
    index, rows = trained_index["index"], trained_index["rows"]
    fused = json.loads(run_cli("search", index, rows[0]["title"], "--json", "-k", "5")[1])
    explicit = json.loads(run_cli("search", index, rows[0]["title"], "--json", "-k", "5", "--space", "fused")[1])
    assert [h["id"] for h in fused["results"]] == [h["id"] for h in explicit["results"]]
    text = json.loads(run_cli("search", index, rows[0]["title"], "--json", "-k", "5", "--space", "text")[1])
    assert len(text["results"]) == 5
    code, out, err = run_cli("search", index, rows[0]["title"], "--json", "--space", "image", "--mode", "dense")
    assert code == 0, err  # text -> image through the shared space: no CLIP model needed
    code, _, err = run_cli("search", index, rows[0]["title"], "--space", "image", "--mode", "hybrid")
    assert code == 1 and "--mode dense" in err
    for space in ("fused", "image", "text"):
        code, out, err = run_cli("similar", index, "--id", rows[0]["id"], "--space", space, "--json", "-k", "3")
        assert code == 0, err
        assert rows[0]["id"] not in {h["id"] for h in json.loads(out)["results"]}
    image = trained_index["catalog"].parent / rows[1]["image"]
    code, out, err = run_cli("similar", index, "--image", image, "--json", "-k", "3")
    assert code == 0, err
    code, _, err = run_cli("similar", index, "--image", image, "--space", "text")
    assert code == 1 and "cannot query the text vectors" in err


def test_eval_commands_in_the_shared_space(trained_index):
    index = trained_index["index"]
    code, out, err = run_cli("eval", "image", index, "--label-field", "articleType", "--space", "fused", "--json", "-q")
    assert code == 0, err
    assert set(json.loads(out)["methods"]) == {"fused", "image->fused"}
    code, out, err = run_cli("eval", "cross-modal", index, "--json", "-q")
    assert code == 0, err
    assert "shared-space text head" in json.loads(out)["notes"][0]


def test_fusion_from_builds_another_index_with_the_same_heads(trained_index, tiny_bert_dir, tiny_resnet_weights, tmp_path):
    rows = demo_rows()[40:60]
    catalog = demo_catalog(tmp_path / "catalog", rows)
    code, out, err = run_cli("index", catalog, "--out", tmp_path / "other", "--text-model", tiny_bert_dir,
                             "--image-model", f"resnet18={tiny_resnet_weights}", "--fusion-from", trained_index["index"], "-q")
    assert code == 0, err
    manifest = IndexManifest.load(tmp_path / "other")
    assert manifest.spaces["fused"].encoder == IndexManifest.load(trained_index["index"]).spaces["fused"].encoder
    assert manifest.spaces["fused"].count == 20
    code, out, err = run_cli("search", tmp_path / "other", rows[0]["title"], "--json")
    assert code == 0 and json.loads(out)["results"], err
    # heads trained on other encoders are refused with the reason
    code, _, err = run_cli("index", catalog, "--out", tmp_path / "third", "--text-model", tiny_bert_dir,
                           "--image-model", "none", "--fusion-from", tmp_path / "nowhere", "-q")
    assert code == 1 and "no trained shared space" in err and not (tmp_path / "third").exists()


def test_fusion_from_leaves_out_a_modality_whose_encoder_differs(trained_index, tiny_bert_dir, tmp_path):
    import torch
    import torchvision

    torch.manual_seed(1)  # the same architecture with other weights: another encoder for the image head
    other_weights = tmp_path / "resnet18-other.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), other_weights)
    rows = demo_rows()[40:60]
    catalog = demo_catalog(tmp_path / "catalog", rows)
    code, out, err = run_cli("index", catalog, "--out", tmp_path / "other", "--text-model", tiny_bert_dir,
                             "--image-model", f"resnet18={other_weights}", "--fusion-from", trained_index["index"], "-q")
    assert code == 0, err
    assert "note: image left out of the fused vectors: the heads were trained on torchvision:resnet18@" in out
    manifest = IndexManifest.load(tmp_path / "other")
    assert manifest.spaces["fused"].count == 20 and "shared-image" not in manifest.spaces  # text alone feeds it
    code, out, err = run_cli("search", tmp_path / "other", rows[0]["title"], "--json", "-k", "3")
    assert code == 0 and len(json.loads(out)["results"]) == 3, err
    code, _, err = run_cli("search", tmp_path / "other", rows[0]["title"], "--space", "image", "--mode", "dense")
    assert code == 1 and "only when the image model is CLIP" in err and "vitrina train" in err


def test_train_on_a_text_only_index_fails_and_leaves_it_intact(tiny_bert_dir, tmp_path):
    rows = demo_rows()[:10]
    catalog = write_csv(tmp_path / "products.csv", [{"id": r["id"], "title": r["title"]} for r in rows])
    index = tmp_path / "idx"
    assert run_cli("index", catalog, "--out", index, "--text-model", tiny_bert_dir, "--image-model", "none", "-q")[0] == 0
    before = sorted(p.name for p in index.iterdir())
    code, _, err = run_cli("train", index, "-q")
    assert code == 1 and "needs two modalities" in err and "add events first" in err
    assert sorted(p.name for p in index.iterdir()) == before
    code, _, err = run_cli("search", index, rows[0]["title"], "--space", "fused")
    assert code == 1 and "vitrina train" in err


def test_events_refresh_the_fused_vectors_of_a_trained_index(trained_index, tmp_path):
    import shutil

    index = tmp_path / "idx"
    shutil.copytree(trained_index["index"], index)
    ids = [r["id"] for r in trained_index["rows"]]
    events = [{"user_id": f"u{u}", "product_id": ids[(u + j) % 10], "event": "purchase", "timestamp": "2024-01-01"}
              for u in range(12) for j in range(3)]
    write_csv(tmp_path / "events.csv", events)
    code, out, err = run_cli("events", "add", index, tmp_path / "events.csv", "--json", "--factors", "4")
    assert code == 0, err
    assert json.loads(out)["fused_refreshed"] is True
    code, out, err = run_cli("train", index, "--epochs", "2", "--dim", "8", "--json", "-q")
    assert code == 0, err
    assert json.loads(out)["modalities"] == ["text", "image", "behaviour"]
    before = np.load(index / "fused.vectors.npy")
    code, out, err = run_cli("events", "add", index, tmp_path / "events.csv", "--json", "--refit", "--factors", "4")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["fused_refreshed"] is True and any("refit since the heads were trained" in n for n in answer["notes"])
    after = np.load(index / "fused.vectors.npy")
    assert np.isfinite(after).all() and not np.allclose(before, after)  # behaviour left out until trained again
