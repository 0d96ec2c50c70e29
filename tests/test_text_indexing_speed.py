"""Bulk text indexing (issue 19): cached exports load without PyTorch; the OpenVINO runtime for catalog text."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from vitrina.encoders import EncoderConfig, EncoderError, load_text_encoder
from vitrina.encoders.factory import cached_text_export
from vitrina.encoders.files import read_checksums
from vitrina.encoders.openvino_runtime import cpu_has_bf16, openvino_installed
from tests.helpers import WORDS, encode_in_fresh_process, run_cli, write_csv

needs_openvino = pytest.mark.skipif(not openvino_installed(), reason="openvino is not installed (pip install vitrina[openvino])")


def titles(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 12)))) for _ in range(n)]


def test_a_cached_text_export_loads_without_pytorch(tiny_bert_dir, tmp_path):
    config = EncoderConfig(device="cpu", onnx_cache=tmp_path / "cache")
    assert cached_text_export(str(tiny_bert_dir), config) is None  # nothing exported yet
    first = load_text_encoder(str(tiny_bert_dir), config)  # loads PyTorch once and exports
    entry = cached_text_export(str(tiny_bert_dir), config)
    assert entry is not None and entry.parent == tmp_path / "cache"
    about, vectors, imported = encode_in_fresh_process(
        tiny_bert_dir, f"EncoderConfig(device='cpu', onnx_cache=Path({str(tmp_path / 'cache')!r}))", ("torch", "transformers"))
    name = about["name"]
    assert imported == []
    assert name == first.name
    assert np.allclose(np.asarray(vectors), first.encode(["red shoes", "a blue shirt"]), atol=1e-5)


def test_a_damaged_cached_export_is_not_taken_on_the_fast_path(tiny_bert_dir, tmp_path):
    config = EncoderConfig(device="cpu", onnx_cache=tmp_path / "cache")
    load_text_encoder(str(tiny_bert_dir), config)
    entry = cached_text_export(str(tiny_bert_dir), config)
    assert entry is not None and "model.onnx" in read_checksums(entry)
    with (entry / "model.onnx").open("r+b") as f:  # one byte flipped past the header
        f.seek(200)
        byte = f.read(1)
        f.seek(200)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert cached_text_export(str(tiny_bert_dir), config) is None
    again = load_text_encoder(str(tiny_bert_dir), config)  # exported again through PyTorch, then usable
    assert cached_text_export(str(tiny_bert_dir), config) is not None
    assert again.encode(["red shoes"]).shape == (1, again.dim)


def test_runtime_is_checked():
    with pytest.raises(ValueError, match="runtime must be one of"):
        EncoderConfig(runtime="tensorrt")


def test_the_onnxruntime_runtime_keeps_catalog_text_in_fp32(tiny_bert_dir, tmp_path):
    encoder = load_text_encoder(str(tiny_bert_dir), EncoderConfig(device="cpu", runtime="onnxruntime", onnx_cache=tmp_path).for_catalog())
    assert encoder.precision == "fp32" and encoder.providers == ["CPUExecutionProvider"]


@needs_openvino
def test_openvino_matches_onnxruntime_on_catalog_text(tiny_bert_dir, tmp_path):
    """OpenVINO (bf16 where the CPU has it, else fp32) gives the vectors ONNX Runtime fp32 gives, in input order,
    over several batches run at once."""
    texts = titles(37, seed=1)
    base = EncoderConfig(device="cpu", batch_size=4, onnx_cache=tmp_path).for_catalog()
    ort = load_text_encoder(str(tiny_bert_dir), replace(base, runtime="onnxruntime"))
    ov = load_text_encoder(str(tiny_bert_dir), base)
    expected = "bf16" if cpu_has_bf16() else None
    if expected is None:  # no bf16 on this CPU: auto stays on onnxruntime; ask for OpenVINO by name
        ov = load_text_encoder(str(tiny_bert_dir), replace(base, runtime="openvino"))
    assert ov.providers == ["OpenVINO (CPU)"] and ov.precision == (expected or "fp32")
    a, b = ort.encode(texts), ov.encode(texts)
    assert b.shape == a.shape and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    assert (a * b).sum(axis=1).min() > 0.999
    assert ov.encode([]).shape == (0, ov.dim)


@needs_openvino
def test_openvino_runs_fp32_graphs_and_int8_catalog_text_only(tiny_bert_dir, tmp_path):
    with pytest.raises(EncoderError, match="OpenVINO runtime runs fp32 graphs"):
        load_text_encoder(str(tiny_bert_dir), EncoderConfig(device="cpu", runtime="openvino", precision="fp16", onnx_cache=tmp_path))


@needs_openvino
def test_queries_stay_on_onnxruntime_int8_by_default(tiny_bert_dir, tmp_path):
    encoder = load_text_encoder(str(tiny_bert_dir), EncoderConfig(device="cpu", onnx_cache=tmp_path))
    assert encoder.precision == "int8" and encoder.providers == ["CPUExecutionProvider"]


def test_index_records_the_runtime_and_refuses_an_unknown_one(tmp_path):
    catalog = write_csv(tmp_path / "c.csv", [{"id": str(i), "title": t} for i, t in enumerate(titles(20))])
    code, _, err = run_cli("index", catalog, "--out", tmp_path / "bad", "--runtime", "tensorrt", "-q")
    assert code != 0 and "--runtime" in err and "tensorrt" in err
    assert not (tmp_path / "bad").exists()
    code, _, err = run_cli("index", catalog, "--out", tmp_path / "idx", "--runtime", "onnxruntime", "-q")
    assert code == 0, err
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["spaces"]["text"]["runtime"] == "onnx fp32 (CPUExecutionProvider)"
