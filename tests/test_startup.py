"""A fresh process's start-up (issue 19, session 3): the optimised ONNX graph cached once per machine and
reused (and refused when damaged), exact spaces whose FAISS index is built on first use (and by a server's
warm-up), the CLI's build commands importing the build pipeline only when they run. Real tiny encoders and
real indexes throughout."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vitrina.encoders import load_text_encoder
from vitrina.encoders.config import EncoderConfig
from vitrina.encoders.onnx_optimised import CACHE_DIR, SIDECAR, cache_key, machine_key
from vitrina.engine.build.indexing import build_index
from vitrina.engine.query.search import SearchSession
from vitrina.index import IndexDirectory
from vitrina.index.product_index import DEFERRED_SEARCH_MAX, DEFERRED_SEARCHES, ProductIndex
from vitrina.serving.config import ServingConfig
from vitrina.serving.live import LiveIndex
from vitrina.serving.metrics import ServiceMetrics
from tests.helpers import write_csv
from tests.test_footprint import _env
from tests.test_security_files import QUERIES, config_for, text_rows

TEXTS = ["red running shoes", "black leather wallet", "a blue cotton dress"]


@pytest.fixture(scope="module")
def built(tiny_bert_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("startup")
    config = config_for(tiny_bert_dir, base / "cache")
    build_index(write_csv(base / "products.csv", text_rows(60)), base / "idx", config)
    return base / "idx", config


def cached_graphs(cache: Path) -> list[Path]:
    return sorted((cache / CACHE_DIR).glob("*.onnx"))


def encode(tiny_bert_dir: Path, cache: Path, **options) -> np.ndarray:
    """Query embeddings of TEXTS (the int8 query graph on the CPU), exports and optimised graphs in `cache`."""
    encoder = load_text_encoder(str(tiny_bert_dir), EncoderConfig(device="cpu", onnx_cache=cache, **options))
    return encoder.encode(TEXTS)


def test_the_optimised_graph_is_saved_once_and_answers_the_same(tiny_bert_dir, tmp_path):
    plain = encode(tiny_bert_dir, tmp_path / "plain", optimised_cache=False)
    assert not (tmp_path / "plain" / CACHE_DIR).exists()  # turned off: nothing saved
    first = encode(tiny_bert_dir, tmp_path / "cache")
    [graph] = cached_graphs(tmp_path / "cache")
    sidecar = json.loads(graph.with_name(graph.name + SIDECAR).read_text())
    assert sidecar["crc"].startswith(f"{graph.stat().st_size}:")
    stamp = graph.stat().st_mtime_ns
    second = encode(tiny_bert_dir, tmp_path / "cache")  # loaded from the cached graph, not saved again
    assert cached_graphs(tmp_path / "cache") == [graph] and graph.stat().st_mtime_ns == stamp
    np.testing.assert_allclose(first, plain, atol=1e-6)
    np.testing.assert_allclose(second, plain, atol=1e-6)


@pytest.mark.parametrize("damage", ["truncated", "bytes changed", "sidecar missing", "not a graph"])
def test_a_damaged_cached_graph_is_never_used_and_made_again(tiny_bert_dir, tmp_path, damage):
    plain = encode(tiny_bert_dir, tmp_path / "plain", optimised_cache=False)
    encode(tiny_bert_dir, tmp_path / "cache")
    [graph] = cached_graphs(tmp_path / "cache")
    sidecar = graph.with_name(graph.name + SIDECAR)
    data = graph.read_bytes()
    if damage == "truncated":
        graph.write_bytes(data[: len(data) // 2])
    elif damage == "bytes changed":
        graph.write_bytes(data[:-64] + bytes(b ^ 0xFF for b in data[-64:]))
    elif damage == "sidecar missing":
        sidecar.unlink()
    else:  # garbage whose sidecar matches: ONNX Runtime refuses it, the session falls back and saves it again
        graph.write_bytes(b"not an onnx graph")
        from vitrina.encoders.onnx_optimised import file_crc

        sidecar.write_text(json.dumps({"crc": file_crc(graph)}))
    again = encode(tiny_bert_dir, tmp_path / "cache")
    np.testing.assert_allclose(again, plain, atol=1e-6)
    assert cached_graphs(tmp_path / "cache") == [graph] and graph.read_bytes() == data  # made again, whole


def test_an_unwritable_cache_falls_back_to_optimising_in_memory(tiny_bert_dir, tmp_path):
    plain = encode(tiny_bert_dir, tmp_path / "plain", optimised_cache=False)
    cache = tmp_path / "cache"
    encode(tiny_bert_dir, cache)  # the export itself is cached here
    shutil.rmtree(cache / CACHE_DIR)
    (cache / CACHE_DIR).write_text("a file where the folder should be")  # mkdir fails: no cache, same answers
    np.testing.assert_allclose(encode(tiny_bert_dir, cache), plain, atol=1e-6)


def test_the_cache_key_holds_the_runtime_version_the_machine_and_the_graph():
    assert "|" in machine_key() and machine_key() == machine_key()
    keys = {cache_key("graph-a", "1.20.0"), cache_key("graph-a", "1.21.0"), cache_key("graph-b", "1.20.0")}
    assert len(keys) == 3 and cache_key("graph-a", "1.20.0") in keys


def test_an_exact_space_answers_a_few_queries_unbuilt_and_builds_for_a_batch(built):
    index, config = built
    directory = IndexDirectory.load(index)
    space = directory.spaces["text"]
    assert "_pending" in space.index.__dict__  # loaded, not built
    assert space.index.ntotal == len(space.vectors) and space.index.dim == space.vectors.shape[1]
    assert not space.index.stores_file and space.index.is_exact and space.index.tunable_parameter is None
    eager = ProductIndex.build(space.vectors, space.rows, "Flat")
    queries = np.asarray(space.vectors[:4], dtype=np.float32)
    got, want = space.index.search(queries, 7), eager.search(queries, 7)  # the tiny model's vectors tie exactly
    assert np.allclose(got[0], want[0], atol=1e-5) and np.allclose(got[0][:, 0], 1.0, atol=1e-4)  # (order of ties:
    # either); the same scores, each query's own vector among the best. Exact order: the next test
    assert "_pending" in space.index.__dict__  # a few queries: answered from the vectors, still unbuilt
    scores, rows = space.search(np.asarray(space.vectors[:DEFERRED_SEARCH_MAX + 1], dtype=np.float32), 1)
    assert "_pending" not in space.index.__dict__ and space.index.is_exact  # a batch builds the FAISS index
    assert np.allclose(scores[:, 0], 1.0, atol=1e-4)
    session = SearchSession(index, config)  # a whole search answers as before: each query finds results
    assert all(len(hits) for hits in session.search(QUERIES, k=5, mode="dense"))


def test_an_unbuilt_exact_index_answers_as_faiss_flat_does():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 48)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = np.arange(3000, dtype=np.int64) * 2 + 1  # rows need not be positions
    queries = vectors[:5] + rng.standard_normal((5, 48)).astype(np.float32) * 0.1
    eager, deferred = ProductIndex.build(vectors, rows, "Flat"), ProductIndex.deferred(vectors, rows, "Flat")
    some = np.arange(6001) % 7 == 0
    two = np.zeros(6001, dtype=bool)
    two[[1, 9]] = True  # fewer allowed than k: empty slots as FAISS leaves them
    for allowed in (None, some, two, np.zeros(6001, dtype=bool)):
        got, want = deferred.search(queries, 12, allowed), eager.search(queries, 12, allowed)
        assert np.array_equal(got[1], want[1]) and np.allclose(got[0], want[0], atol=1e-5)
    assert "_pending" in deferred.__dict__
    for _ in range(DEFERRED_SEARCHES - 4):  # a process that keeps searching builds it after a few searches
        deferred.search(queries[:1], 3)
    assert "_pending" in deferred.__dict__
    deferred.search(queries[:1], 3)
    assert "_pending" not in deferred.__dict__
    deferred.ensure_built()
    assert "_pending" not in deferred.__dict__ and np.array_equal(deferred.search(queries, 12)[1], eager.search(queries, 12)[1])


def test_a_server_builds_every_space_before_it_answers(built):
    index, config = built
    live = LiveIndex(index, config, ServingConfig(), ServiceMetrics())
    assert any("_pending" in s.index.__dict__ for s in live.session.directory.spaces.values())
    live.warm_up()
    assert not any("_pending" in s.index.__dict__ for s in live.session.directory.spaces.values())
    live.close()


def test_the_cli_knows_the_build_engines_without_importing_the_pipeline():
    from vitrina.cli.build import ENGINES
    from vitrina.engine.build.pipeline import ENGINES as PIPELINE_ENGINES

    assert ENGINES == PIPELINE_ENGINES
    probe = ("import sys\nfrom vitrina.cli.main import main\n"
             "print([m for m in sys.modules if m.startswith('vitrina.engine.build.') and m.rsplit('.', 1)[1] in "
             "('assemble', 'encode', 'indexing', 'pipeline', 'reindex', 'updates', 'ray_encode')], 'tqdm' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "False"]


def test_each_command_parses_alone_exactly_as_in_the_whole_parser():
    from vitrina.cli.main import build_parser, command_of

    def commands(parser):
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices

    full = commands(build_parser())
    assert len(full) >= 17
    for name, parser in full.items():
        alone = commands(build_parser(name))
        assert list(alone) == [name] and alone[name].format_help() == parser.format_help()
    assert list(commands(build_parser("serch"))) == list(full)  # unknown: the whole parser, whose error lists them
    assert command_of(["-v", "search", "DIR", "q"]) == "search" and command_of(["--help"]) is None


def test_a_misspelt_command_still_lists_the_commands(tmp_path):
    done = subprocess.run([sys.executable, "-m", "vitrina", "serch", "x"], capture_output=True, text=True, env=_env(),
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and "invalid choice: 'serch'" in done.stderr and "'search'" in done.stderr
    assert "Traceback" not in done.stderr


def test_hybrid_union_equals_numpy_unique():
    from vitrina.index.hybrid import sorted_unique

    rng = np.random.default_rng(0)
    for values in (np.array([], dtype=np.int64), np.array([5]), rng.integers(0, 50, 200), rng.integers(-3, 3, 9)):
        assert np.array_equal(sorted_unique(values), np.unique(values))


def test_product_rows_by_id_are_built_on_first_lookup(built):
    index, _ = built
    products = IndexDirectory.load(index).products
    assert "_row_of" not in products.__dict__
    assert products.row_of(products.ids[7]) == 7 and products.ids[3] in products
    assert dict(products.rows_by_id) == {pid: row for row, pid in enumerate(products.ids)}


def test_missing_column_error_is_one_class_wherever_imported():
    from vitrina.engine.data.events import MissingColumnError as from_events
    from vitrina.engine.errors import CatalogError, MissingColumnError

    assert from_events is MissingColumnError and issubclass(MissingColumnError, CatalogError)
    assert MissingColumnError("no column user", "user_field").setting == "user_field"


def test_a_session_without_prepacked_weights_answers_the_same(tiny_bert_dir, tmp_path):
    packed = encode(tiny_bert_dir, tmp_path / "cache")
    unpacked = encode(tiny_bert_dir, tmp_path / "cache", prepack=False)
    np.testing.assert_allclose(unpacked, packed, atol=1e-6)
