"""int8 catalog text on OpenVINO (issue 19): an NNCF graph calibrated on catalog texts, cached and checked."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from vitrina.encoders import EncoderConfig, EncoderError, load_text_encoder
from vitrina.encoders.files import read_checksums
from vitrina.encoders.openvino_int8 import GRAPH_FILE, calibration_sample, cached_int8_graph, int8_entry, nncf_installed
from vitrina.encoders.openvino_runtime import openvino_installed
from tests.helpers import WORDS, encode_in_fresh_process, run_cli, write_csv

needs_int8 = pytest.mark.skipif(not (openvino_installed() and nncf_installed()),
                                reason="openvino and nncf are not installed (pip install vitrina[int8])")


def titles(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 12)))) for _ in range(n)]


def int8_config(tmp_path) -> EncoderConfig:
    return EncoderConfig(device="cpu", batch_size=8, runtime="openvino", precision="int8", onnx_cache=tmp_path / "cache").for_catalog()


def test_calibration_sample_spreads_over_the_catalog_and_skips_blanks():
    texts = [f"t{i}" for i in range(1000)] + ["", "  "]
    sample = calibration_sample(texts, 10)
    assert sample == [f"t{i}" for i in range(0, 1000, 100)]
    assert calibration_sample(["a", " ", "b"], 10) == ["a", "b"]


@needs_int8
def test_int8_catalog_graph_keeps_parity_with_fp32(tiny_bert_dir, tmp_path):
    """The quantised graph is made from the first catalog texts, cached, and stays close to ONNX Runtime fp32."""
    config = int8_config(tmp_path)
    catalog = titles(300, seed=2)
    encoder = load_text_encoder(str(tiny_bert_dir), config)
    assert encoder.precision == "int8" and encoder.providers == ["OpenVINO (CPU)"]
    assert cached_int8_graph(encoder.model_dir, config) is None  # nothing made until catalog text arrives
    vectors = encoder.encode(catalog)
    graph = cached_int8_graph(encoder.model_dir, config)
    assert graph is not None and graph.name == GRAPH_FILE
    assert "calib-catalog" in (graph.parent / "recipe.txt").read_text()
    reference = load_text_encoder(str(tiny_bert_dir), replace(config, runtime="onnxruntime", precision="fp32")).encode(catalog)
    cosine = (vectors * reference).sum(axis=1)
    assert vectors.shape == reference.shape and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert cosine.mean() > 0.99 and cosine.min() > 0.95, (cosine.mean(), cosine.min())
    again = load_text_encoder(str(tiny_bert_dir), config)  # a new process takes the cached graph: same vectors
    assert again.session is not None
    assert np.allclose(again.encode(catalog[:50]), vectors[:50], atol=1e-3)
    assert again.encode([]).shape == (0, again.dim)


@needs_int8
def test_a_damaged_int8_graph_is_refused_and_made_again(tiny_bert_dir, tmp_path):
    config = int8_config(tmp_path)
    encoder = load_text_encoder(str(tiny_bert_dir), config)
    encoder.encode(titles(40))
    entry = int8_entry(encoder.model_dir, config)
    assert {GRAPH_FILE, "model.int8.bin", "recipe.txt"} <= set(read_checksums(entry))
    with (entry / "model.int8.bin").open("r+b") as f:  # one byte of the weights flipped
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert cached_int8_graph(encoder.model_dir, config) is None
    fresh = load_text_encoder(str(tiny_bert_dir), config)
    assert fresh.session is None  # not loaded from the damaged entry
    assert fresh.encode(titles(40)).shape == (40, fresh.dim)
    assert cached_int8_graph(encoder.model_dir, config) is not None  # quantised again, intact


@needs_int8
def test_int8_queries_stay_on_onnxruntime_and_fp16_is_refused_on_openvino(tiny_bert_dir, tmp_path):
    query = load_text_encoder(str(tiny_bert_dir), replace(int8_config(tmp_path), catalog=False))
    assert query.precision == "int8" and query.providers == ["CPUExecutionProvider"]
    with pytest.raises(EncoderError, match="OpenVINO runtime runs fp32 graphs"):
        load_text_encoder(str(tiny_bert_dir), replace(int8_config(tmp_path), precision="fp16"))


def test_a_bad_precision_is_refused_with_no_index_left(tmp_path):
    catalog = write_csv(tmp_path / "c.csv", [{"id": str(i), "title": t} for i, t in enumerate(titles(20))])
    code, _, err = run_cli("index", catalog, "--out", tmp_path / "bad", "--precision", "int4", "-q")
    assert code != 0 and "--precision" in err and "int4" in err
    assert not (tmp_path / "bad").exists()


@needs_int8
def test_index_with_int8_catalog_text_records_the_runtime(tiny_bert_dir, tmp_path):
    catalog = write_csv(tmp_path / "c.csv", [{"id": str(i), "title": t} for i, t in enumerate(titles(30))])
    code, _, err = run_cli("index", catalog, "--out", tmp_path / "idx", "--text-model", tiny_bert_dir,
                           "--runtime", "openvino", "--precision", "int8", "-q")
    assert code == 0, err
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["spaces"]["text"]["runtime"] == "onnx int8 (OpenVINO (CPU))"
    code, out, err = run_cli("search", tmp_path / "idx", titles(1, seed=5)[0], "--json")
    assert code == 0, err


@needs_int8
def test_a_cached_int8_graph_loads_without_pytorch_or_nncf(tiny_bert_dir, tmp_path):
    config = int8_config(tmp_path)
    expected = load_text_encoder(str(tiny_bert_dir), config).encode(["red shoes", "a blue shirt"])  # made here
    about, vectors, imported = encode_in_fresh_process(
        tiny_bert_dir, f"EncoderConfig(device='cpu', batch_size=8, runtime='openvino', precision='int8', "
                       f"onnx_cache=Path({str(tmp_path / 'cache')!r})).for_catalog()", ("torch", "transformers", "nncf"))
    precision = about["precision"]
    assert precision == "int8" and imported == []
    assert np.allclose(np.asarray(vectors), expected, atol=1e-3)
