"""ONNX export and the ONNX Runtime backend: parity with PyTorch, errors, caching, no PyTorch at query time."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vitrina.encoders import EncoderConfig, EncoderError, load_image_encoder, load_text_encoder
from vitrina.encoders.factory import load_image_space_text_encoder
from vitrina.encoders.onnx_export import export_encoder
from vitrina.encoders.onnx_runtime import META_FILE, OnnxImageEncoder, OnnxTextEncoder, load_onnx_encoder
from vitrina.engine.query.search import SearchSession
from tests.helpers import DEMO_DATA, REPO, SHARED, WORDS, demo_catalog, demo_rows, run_cli

TORCH = EncoderConfig(backend="torch", device="cpu")


def random_texts(n: int, seed: int) -> list[str]:
    """Fresh inputs: catalog words, digits, punctuation, accents, lengths from 1 to ~60 tokens."""
    rng = np.random.default_rng(seed)
    extra = ["36\"", "1/2 in.", "crème", "naïve", "über", "x-large", "&", "100%", "T-Shirt"]
    pool = WORDS + extra
    return [" ".join(rng.choice(pool, size=int(rng.integers(1, 60)))) for _ in range(n)]


def random_images(n: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (int(rng.integers(40, 300)), int(rng.integers(40, 300)), 3), dtype=np.uint8))
            for _ in range(n)]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


def exported(encoder, tmp_path, precisions=("fp32",)):
    export_encoder(encoder, tmp_path / "export", precisions)
    return tmp_path / "export"


def test_tiny_bert_fp32_parity_and_length_buckets(tiny_bert_dir, tmp_path):
    torch_enc = load_text_encoder(str(tiny_bert_dir), TORCH)
    onnx = load_onnx_encoder(exported(torch_enc, tmp_path), EncoderConfig(batch_size=7, precision="fp32"))
    assert isinstance(onnx, OnnxTextEncoder) and onnx.name == torch_enc.name and onnx.dim == torch_enc.dim
    texts = random_texts(50, seed=1)
    batched = onnx.encode(texts)
    assert cosines(batched, torch_enc.encode(texts)).min() >= 0.9999
    one_by_one = np.concatenate([onnx.encode([t]) for t in texts[:10]])  # padding inside a bucket changes nothing
    np.testing.assert_allclose(batched[:10], one_by_one, atol=1e-5)
    assert onnx.encode([]).shape == (0, onnx.dim)


@pytest.mark.slow
def test_minilm_fp32_and_int8_parity(tmp_path):
    torch_enc = load_text_encoder("all-MiniLM-L6-v2", TORCH)
    path = exported(torch_enc, tmp_path, ("fp32", "int8"))
    texts = random_texts(200, seed=2)
    reference = torch_enc.encode(texts)
    fp32 = load_onnx_encoder(path, EncoderConfig(precision="fp32")).encode(texts)
    int8_encoder = load_onnx_encoder(path, EncoderConfig())  # auto on CPU: int8 for text
    assert int8_encoder.precision == "int8"
    int8 = int8_encoder.encode(texts)
    assert cosines(fp32, reference).min() >= 0.9999
    assert cosines(int8, reference).mean() >= 0.99
    assert cosines(int8, reference).min() >= 0.95


def test_cnn_image_parity_and_preprocessing(tiny_resnet_weights, tmp_path):
    torch_enc = load_image_encoder(f"resnet18={tiny_resnet_weights}", TORCH)
    onnx = load_onnx_encoder(exported(torch_enc, tmp_path), EncoderConfig(batch_size=3))
    assert isinstance(onnx, OnnxImageEncoder) and onnx.precision == "fp32"
    images = random_images(8, seed=3)
    assert cosines(onnx.encode(images), torch_enc.encode(images)).min() >= 0.9999
    pixels = onnx.preprocess(images)
    assert pixels.shape == (8, 224, 224, 3) and pixels.dtype == np.uint8
    np.testing.assert_allclose(onnx.encode_pixels(pixels), onnx.encode(images), atol=1e-6)


@pytest.mark.slow
def test_efficientnet_lite0_parity(tmp_path):
    torch_enc = load_image_encoder("efficientnet-lite0", TORCH)
    onnx = load_onnx_encoder(exported(torch_enc, tmp_path), EncoderConfig())
    images = random_images(6, seed=4)
    assert cosines(onnx.encode(images), torch_enc.encode(images)).min() >= 0.9999


def test_clip_towers_parity(tiny_clip_dir, tmp_path):
    spec = f"clip:{tiny_clip_dir}"
    image_torch = load_image_encoder(spec, TORCH)
    text_torch = load_image_space_text_encoder(spec, TORCH)
    export_encoder(image_torch, tmp_path / "image")
    export_encoder(text_torch, tmp_path / "text")
    image_onnx = load_onnx_encoder(tmp_path / "image", EncoderConfig(), "image")
    text_onnx = load_onnx_encoder(tmp_path / "text", EncoderConfig(), "text")
    images = random_images(6, seed=5)
    assert cosines(image_onnx.encode(images), image_torch.encode(images)).min() >= 0.9999
    texts = random_texts(30, seed=6) + ["Men&#39;s Blue T-shirt &amp; jeans", "日本語", " ".join(WORDS * 3)]
    assert cosines(text_onnx.encode(texts), text_torch.encode(texts)).min() >= 0.9999


def test_onnx_backend_through_the_factory_uses_the_cache(tiny_bert_dir, tmp_path):
    config = EncoderConfig(backend="onnx", onnx_cache=tmp_path / "cache")
    first = load_text_encoder(str(tiny_bert_dir), config)
    assert isinstance(first, OnnxTextEncoder) and first.precision == "int8"
    assert first.model_dir.parent == tmp_path / "cache"
    stamp = (first.model_dir / META_FILE).stat().st_mtime_ns
    second = load_text_encoder(str(tiny_bert_dir), config)
    assert second.model_dir == first.model_dir and (first.model_dir / META_FILE).stat().st_mtime_ns == stamp


def test_unsupported_architecture_is_named(tiny_bert_dir, tmp_path):
    from transformers import GPT2Config, GPT2Model

    model_dir = tmp_path / "tiny-gpt2"
    GPT2Model(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=200, n_positions=32)).save_pretrained(model_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (tiny_bert_dir / name).exists():
            shutil.copy(tiny_bert_dir / name, model_dir / name)
    encoder = load_text_encoder(str(model_dir), TORCH)
    with pytest.raises(EncoderError, match="'gpt2'"):
        export_encoder(encoder, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(EncoderError, match="int8 quantisation is for text"):
        export_encoder(load_image_encoder("efficientnet-lite0", TORCH), tmp_path / "out", ("fp32", "int8"))


def test_damaged_or_wrong_exports_fail_clearly(tiny_bert_dir, tiny_resnet_weights, tmp_path):
    path = exported(load_text_encoder(str(tiny_bert_dir), TORCH), tmp_path)
    with pytest.raises(EncoderError, match="a image model is needed|an exported text model"):
        load_onnx_encoder(path, EncoderConfig(), "image")
    with pytest.raises(EncoderError, match="no int8 graph"):
        load_onnx_encoder(path, EncoderConfig(precision="int8"))
    (path / "model.onnx").unlink()
    with pytest.raises(EncoderError, match="model.onnx is missing"):
        load_onnx_encoder(path, EncoderConfig())
    with pytest.raises(EncoderError, match="not an exported Vitrina ONNX model"):
        load_onnx_encoder(tmp_path, EncoderConfig())


def small_catalog(tmp_path, n=60):
    return demo_catalog(tmp_path / "catalog", demo_rows()[:n])


def test_export_onnx_command(tiny_bert_dir, tiny_resnet_weights, tmp_path):
    code, out, err = run_cli("export-onnx", "--text-model", tiny_bert_dir, "--image-model",
                             f"resnet18={tiny_resnet_weights}", "--out", tmp_path / "exp", "--quantize", "int8", "--fp16",
                             "--json")
    assert code == 0, err
    summary = json.loads(out)
    roles = {m["role"]: m for m in summary["models"]}
    assert set(roles) == {"text", "image"}
    assert set(roles["text"]["files"]) == {"fp32", "int8", "fp16"} and set(roles["image"]["files"]) == {"fp32", "fp16"}
    assert roles["text"]["check_cosine"]["fp32"] >= 0.9999 and roles["image"]["check_cosine"]["fp32"] >= 0.9999
    assert roles["text"]["check_cosine"]["fp16"] >= 0.99 and roles["image"]["check_cosine"]["fp16"] >= 0.99
    assert (tmp_path / "exp" / "text" / "tokenizer.json").is_file()
    code, _, err = run_cli("export-onnx", "--out", tmp_path / "none")
    assert code == 1 and "--text-model" in err


def test_index_and_search_on_onnx_backend(tiny_bert_dir, tiny_resnet_weights, tmp_path):
    catalog = small_catalog(tmp_path)
    models = ["--text-model", tiny_bert_dir, "--image-model", f"resnet18={tiny_resnet_weights}"]
    # --precision fp32: PyTorch's vectors on both backends (by default catalog text and photos compute in bf16 where
    # OpenVINO runs them on a CPU with it: cosine 0.9995, tests/test_photo_indexing.py and test_text_indexing_speed.py)
    code, _, err = run_cli("index", catalog, "--out", tmp_path / "onnx", "--backend", "onnx", "--precision", "fp32", "-q", *models)
    assert code == 0, err
    code, _, err = run_cli("index", catalog, "--out", tmp_path / "torch", "--backend", "torch", "-q", *models)
    assert code == 0, err
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    # stored vectors: fp32; queries: int8
    assert manifest["spaces"]["text"]["runtime"].split()[:2] == ["onnx", "fp32"]
    assert manifest["spaces"]["image"]["runtime"].startswith("onnx fp32")
    assert {p.name for p in (tmp_path / "onnx" / "encoders").iterdir()} == {"text", "image"}
    # the same encoder name on both backends: an index built by one is searched by the other
    torch_vectors = np.load(tmp_path / "torch" / "image.vectors.npy")
    onnx_vectors = np.load(tmp_path / "onnx" / "image.vectors.npy")
    assert cosines(torch_vectors, onnx_vectors).min() >= 0.9999
    for backend in ("onnx", "torch"):
        code, out, err = run_cli("similar", tmp_path / "torch", "--id", demo_rows()[0]["id"], "-k", "5", "--json",
                                 "--backend", backend)
        assert code == 0, err
        assert [h["id"] for h in json.loads(out)["results"]] == [
            h["id"] for h in json.loads(run_cli("similar", tmp_path / "onnx", "--id", demo_rows()[0]["id"], "-k", "5", "--json")[1])["results"]
        ]
    code, out, err = run_cli("search", tmp_path / "torch", "red shoes", "--mode", "dense", "--backend", "onnx", "--json")
    assert code == 0, err
    code, _, err = run_cli("index", catalog, "--out", tmp_path / "int8", "--backend", "onnx", "--precision", "int8",
                           "--image-model", "none", "-q", "--text-model", tiny_bert_dir)
    assert code == 0, err
    assert json.loads((tmp_path / "int8" / "manifest.json").read_text())["spaces"]["text"]["runtime"].startswith("onnx int8")
    assert (tmp_path / "torch" / "encoders" / "text" / META_FILE).is_file()  # exported once, kept in the index


def test_an_export_of_another_model_is_refused(tiny_bert_dir, tmp_path):
    catalog = small_catalog(tmp_path, 20)
    code, _, err = run_cli("index", catalog, "--out", tmp_path / "idx", "--image-model", "none", "-q", "--backend", "torch")
    assert code == 0, err
    export_encoder(load_text_encoder(str(tiny_bert_dir), TORCH), tmp_path / "other")
    code, _, err = run_cli("search", tmp_path / "idx", "shoes", "--text-model", tmp_path / "other", "--mode", "dense")
    assert code == 1
    assert "made by transformers:sentence-transformers/all-MiniLM-L6-v2" in err and "tiny-bert" in err


@pytest.mark.slow
def test_search_on_onnx_imports_no_pytorch(tmp_path):
    catalog = small_catalog(tmp_path, 30)
    code, _, err = run_cli("index", catalog, "--out", tmp_path / "idx", "--backend", "onnx", "-q")
    assert code == 0, err
    image = DEMO_DATA / demo_rows()[0]["image"]
    script = (
        "import sys, json\n"
        "from vitrina.cli import main\n"
        f"assert main(['search', {str(tmp_path / 'idx')!r}, 'blue shirt', '--backend', 'onnx', '--json']) == 0\n"
        f"assert main(['similar', {str(tmp_path / 'idx')!r}, '--image', {str(image)!r}, '--backend', 'onnx', '--json']) == 0\n"
        "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'torchvision', 'open_clip') if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == []
    assert json.loads(lines[0])["results"] and json.loads(lines[1])["results"]


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "homedepot").is_dir(), reason="../shared/data/homedepot is absent")
def test_int8_ranking_parity_on_home_depot(tmp_path):
    """Dense retrieval with int8 ONNX vs PyTorch fp32 on judged Home Depot queries: same top 10, same nDCG."""
    from vitrina.engine.evaluate.evaluation import evaluate_text, read_qrels
    from vitrina.engine.config import VitrinaConfig
    from tests.helpers import write_csv

    qrels = read_qrels(SHARED / "homedepot" / "qrels_dev.csv")
    query_ids = sorted(qrels.queries)[:1000]
    judged = {pid for q in query_ids for pid in qrels.judgements[q]}
    import csv

    with (SHARED / "homedepot" / "products.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if r["product_id"] in judged] + [r for r in rows if r["product_id"] not in judged][:2000]
    catalog = write_csv(tmp_path / "products.csv", [{"id": r["product_id"], "title": r["title"]} for r in keep])
    sessions = {}
    for backend in ("torch", "onnx"):
        code, _, err = run_cli("index", catalog, "--out", tmp_path / backend, "--image-model", "none", "--no-lexical",
                               "-q", "--backend", backend)
        assert code == 0, err
        sessions[backend] = SearchSession(tmp_path / backend, VitrinaConfig(encoders=EncoderConfig(backend=backend)))
    subset = qrels.subset(query_ids)
    results = {b: evaluate_text(s, subset, 10, methods=["dense"], progress=False) for b, s in sessions.items()}
    ndcg = {b: r.method("dense").mean("ndcg@10") for b, r in results.items()}
    assert abs(ndcg["onnx"] - ndcg["torch"]) <= 0.01 * ndcg["torch"]
    texts = [qrels.queries[q] for q in query_ids]
    tops = {b: s.retrieve(texts, 10, mode="dense")[1] for b, s in sessions.items()}
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(tops["torch"], tops["onnx"])])
    assert overlap >= 0.95


def test_default_backend_is_onnx_and_int8_batches_stay_close(tiny_bert_dir, tmp_path):
    """int8 activations are quantised per batch, so a text's vector moves a little with its batch-mates."""
    encoder = load_text_encoder(str(tiny_bert_dir), EncoderConfig(batch_size=3, onnx_cache=tmp_path))
    assert isinstance(encoder, OnnxTextEncoder) and encoder.precision == "int8"
    texts = random_texts(12, seed=7)
    together = encoder.encode(texts)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([encoder.encode([t]) for t in texts])
    assert cosines(together, one_by_one).min() >= 0.99


def test_providers_follow_the_device(tiny_clip_dir, tmp_path):
    import onnxruntime as ort

    from vitrina.encoders.onnx_runtime import execution_providers

    assert execution_providers(EncoderConfig(device="cpu")) == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(EncoderError, match="no CUDA provider"):
            execution_providers(EncoderConfig(device="cuda:0"))
    # a fixed-length (CLIP) text graph ignores a shorter max_text_length instead of failing
    export_encoder(load_image_space_text_encoder(f"clip:{tiny_clip_dir}", TORCH), tmp_path / "clip-text")
    short = load_onnx_encoder(tmp_path / "clip-text", EncoderConfig(max_text_length=4))
    assert short.encode(["red leather shoes for men"]).shape == (1, short.dim)
