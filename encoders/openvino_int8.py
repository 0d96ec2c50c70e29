"""int8 catalog text graphs for OpenVINO: NNCF post-training quantisation of an exported text model.

The recipe (NNCF `ModelType.TRANSFORMER`: SmoothQuant, int8 weight-activation matrix products with VNNI except
the feed-forward outputs, mixed preset, fast bias correction) is calibrated on a sample of the catalog's own texts, taken from the first texts the catalog
encoder embeds, never from benchmark data. The quantised graph is an OpenVINO IR cached beside the ONNX exports,
keyed by the sha256 of the fp32 graph and the recipe, with checksums: a damaged entry is never used (it is made
again). Needs the optional `nncf` package (`pip install vitrina[int8]`) only to make the graph, not to run it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vitrina.encoders.config import EncoderConfig
from vitrina.encoders.errors import EncoderError
from vitrina.encoders.files import clean_leftovers, digest_file, leftover_name, mismatches, read_checksums, write_checksums

RECIPE = "nncf3-ptq|transformer|mixed|ffn-out+attention-float|calib-catalog-256"  # a new recipe quantises again
CALIBRATION_TEXTS = 256  # catalog texts the activation ranges are measured on (NNCF's default subset is 300)
GRAPH_FILE = "model.int8.xml"
log = logging.getLogger("vitrina")


def nncf_installed() -> bool:
    """Whether the optional `nncf` package (needed to make int8 graphs) can be imported."""
    return importlib.util.find_spec("nncf") is not None


def int8_entry(model_dir: Path, config: EncoderConfig) -> Path:
    """Where the int8 graph of the fp32 text graph in `model_dir` is cached (whether or not it is there)."""
    model_dir = Path(model_dir)
    fp32 = (read_checksums(model_dir) or {}).get("model.onnx") or digest_file(model_dir / "model.onnx")
    key = hashlib.sha256(f"{fp32}|{RECIPE}".encode()).hexdigest()[:20]
    return (config.onnx_cache or _default_cache()) / f"ov-int8-{key}"


def _default_cache() -> Path:
    from vitrina.encoders.onnx_runtime import default_cache_dir

    return default_cache_dir()


def cached_int8_graph(model_dir: Path, config: EncoderConfig) -> Path | None:
    """The cached int8 graph (its .xml) when it is there and intact, else None; a damaged entry is removed."""
    entry = int8_entry(model_dir, config)
    recorded = read_checksums(entry)
    if recorded is None:
        if entry.exists():
            log.warning("the int8 graph cache %s has no checksums; quantising again", entry)
        return None
    bad = mismatches(entry, recorded)
    if bad or GRAPH_FILE not in recorded:
        what = bad[0][0] if bad else GRAPH_FILE
        log.warning("the int8 graph cache %s cannot be used (%s is missing or damaged); quantising again", entry, what)
        return None
    return entry / GRAPH_FILE


def calibration_sample(texts: Sequence[str], n: int = CALIBRATION_TEXTS) -> list[str]:
    """Up to n non-blank texts spread evenly over `texts` (deterministic)."""
    kept = [t for t in texts if t and t.strip()]
    if len(kept) <= n:
        return kept
    step = len(kept) / n
    return [kept[int(i * step)] for i in range(n)]


def float_matmuls(onnx_path: Path) -> list[str]:
    """Names of the MatMuls kept out of int8: the feed-forward outputs (their wide GELU inputs lose most from 8 bits;
    on MiniLM the min cosine to fp32 falls 0.997 -> 0.985 with them) and the products of two activations (attention
    scores and values: a few percent of the work on short titles, and error with no gain)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    shapes = {init.name: tuple(init.dims) for init in graph.initializer if len(init.dims) == 2}
    out = []
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        dims = [shapes[i] for i in node.input if i in shapes]
        if not dims or dims[0][0] > dims[0][1]:
            out.append(node.name)
    return out


def make_int8_graph(model_dir: Path, config: EncoderConfig, feeds: Sequence[dict[str, np.ndarray]]) -> Path:
    """Quantise the fp32 graph of `model_dir` with the recipe, calibrated on `feeds` (one text per feed), cache it
    and return its .xml. Raises EncoderError when nncf is missing or quantisation fails."""
    if not nncf_installed():
        raise EncoderError("int8 catalog text on OpenVINO needs nncf to make its graph once; pip install vitrina[int8] "
                           "(or use precision auto for bf16)")
    if not feeds:
        raise EncoderError("int8 quantisation needs at least one non-blank catalog text to calibrate on")
    entry = int8_entry(model_dir, config)
    tmp = entry.parent / leftover_name(entry.name, "tmp")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(entry)
        tmp.mkdir()
        _quantize(Path(model_dir) / "model.onnx", tmp / GRAPH_FILE, list(feeds))
        (tmp / "recipe.txt").write_text(f"{RECIPE}\ncalibration texts: {len(feeds)}\n")
        write_checksums(tmp)
        if entry.exists():  # another process made it meanwhile, or a damaged one: replace it
            old = entry.parent / leftover_name(entry.name, "old")
            os.replace(entry, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, entry)
    except EncoderError:
        raise
    except Exception as exc:  # nncf and OpenVINO raise their own types
        raise EncoderError(f"could not quantise {model_dir} to int8: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return entry / GRAPH_FILE


def _quantize(onnx_path: Path, out: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    import nncf
    import openvino as ov

    from vitrina.encoders.openvino_runtime import _core

    quiet = logging.getLogger("nncf")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        model = _core().read_model(str(onnx_path))
        quantised = nncf.quantize(
            model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER, preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(feeds), ignored_scope=nncf.IgnoredScope(names=float_matmuls(onnx_path), validate=False),
        )
    finally:
        quiet.setLevel(level)
    ov.save_model(quantised, str(out))


def int8_graph(model_dir: Path, config: EncoderConfig, texts: Sequence[str],
               to_feeds: Callable[[list[str]], list[dict[str, np.ndarray]]]) -> Path:
    """The cached int8 graph of `model_dir`, made from a sample of `texts` first when it is missing or damaged."""
    cached = cached_int8_graph(model_dir, config)
    if cached is not None:
        return cached
    sample = calibration_sample(texts)
    log.info("quantising %s to int8 for OpenVINO, calibrated on %d catalog texts (once; cached)", model_dir, len(sample))
    return make_int8_graph(model_dir, config, to_feeds(sample))
