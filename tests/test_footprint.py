"""Start-up and storage footprint (issue 19): a Flat space stores each vector once (its FAISS index is built
from the vectors at load), older directories holding both files keep working and are brought to one copy
when edited, and a fresh `vitrina search` loads none of the heavy libraries the search does not use.
Real tiny encoders and real indexes throughout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vitrina.engine.api import Index
from vitrina.engine.build.indexing import build_index
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.query.search import SearchSession
from vitrina.index import IndexDirectory
from vitrina.index.errors import IndexStoreError
from vitrina.index.store import rebuilt_at_load
from vitrina.index.versions import resolve_index_path
from tests.helpers import REPO, write_csv
from tests.test_security_files import QUERIES, config_for, text_rows

# Never on the path of a text search: each costs tenths of a second to import (or is the wrong tool).
NOT_FOR_SEARCH = ("torch", "transformers", "pandas", "implicit", "fastapi", "uvicorn", "ray", "matplotlib",
                  "sentence_transformers", "sklearn", "http.client", "PIL.JpegImagePlugin", "bm25s", "scipy",
                  # session 3: the build pipeline (the CLI's build commands import it when they run) and its tqdm
                  "tqdm", "vitrina.engine.build.assemble", "vitrina.engine.build.encode", "vitrina.engine.build.indexing",
                  "vitrina.engine.build.pipeline", "vitrina.engine.build.reindex", "vitrina.engine.build.updates",
                  "numpy.ma", "pyarrow.csv", "vitrina.engine.data.events")


@pytest.fixture(scope="module")
def built(tiny_bert_dir, tmp_path_factory) -> tuple[Path, VitrinaConfig]:
    base = tmp_path_factory.mktemp("footprint")
    config = config_for(tiny_bert_dir, base / "cache")
    catalog = write_csv(base / "products.csv", text_rows(80))
    build_index(catalog, base / "idx", config)
    return base / "idx", config


def ranked(index: Path, config: VitrinaConfig, mode: str = "dense") -> list[list[tuple[str, float]]]:
    session = SearchSession(index, config)
    return [[(h.id, round(h.score, 5)) for h in hits] for hits in session.search(QUERIES, k=8, mode=mode)]


def older_layout(index: Path, dest: Path) -> Path:
    """A copy of `index` as an older Vitrina wrote it: the Flat index's own file beside the vectors."""
    shutil.copytree(index, dest)
    IndexDirectory.load(dest).spaces["text"].index.save(dest / "text.faiss")
    return dest


def test_a_flat_space_stores_each_vector_once(built):
    index, config = built
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["spaces"]["text"]["factory"] == "Flat" and rebuilt_at_load("Flat")
    assert (index / "text.vectors.npy").is_file()
    assert not (index / "text.faiss").exists()  # the vectors alone: the index is built from them at load
    space = IndexDirectory.load(index).spaces["text"]
    assert space.index.ntotal == manifest["spaces"]["text"]["count"] == len(space.vectors)
    scores, rows = space.search(np.asarray(space.vectors[:3], dtype=np.float32), 1)
    assert rows[:, 0].tolist() == np.asarray(space.rows[:3]).tolist()  # each vector finds its own product
    assert np.allclose(scores[:, 0], 1.0, atol=1e-4)


def test_an_older_directory_holding_both_files_answers_the_same(built, tmp_path):
    index, config = built
    older = older_layout(index, tmp_path / "older")
    assert (older / "text.faiss").is_file()
    assert ranked(older, config) == ranked(index, config)
    assert ranked(older, config, "hybrid") == ranked(index, config, "hybrid")


def test_editing_an_older_directory_leaves_one_copy_and_no_stale_index(built, tmp_path):
    index, config = built
    older = older_layout(index, tmp_path / "older")
    Index(older, config).upsert([{"id": "new-1", "title": "waterproof leather hiking boots"}])
    current = resolve_index_path(older)  # the edit published a new version
    assert (current / "text.vectors.npy").is_file()
    assert not (current / "text.faiss").exists()  # a stale Flat file would hide the new product
    hits = Index(older, config).similar("new-1", k=3, space="text")
    assert hits and "new-1" not in [h.id for h in hits]
    found = [h.id for h in Index(older, config).search("waterproof leather hiking boots", k=5)]
    assert "new-1" in found


def test_a_missing_ann_index_file_is_still_an_error(built, tmp_path):
    """Only a Flat space may lack its file: an HNSW space without one is damaged and says so."""
    index, config = built
    copy = tmp_path / "hnsw"
    shutil.copytree(index, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["spaces"]["text"]["factory"] = "HNSW32"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code = subprocess.run([sys.executable, "-m", "vitrina", "search", str(copy), "red shoes", "--mode", "lexical"],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert code.returncode == 1 and "text.faiss" in code.stderr and "Traceback" not in code.stderr


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def test_a_fresh_search_loads_no_heavy_library_it_does_not_use(built, tmp_path):
    index, config = built
    probe = (
        "import sys\n"
        "from vitrina.cli import main\n"
        f"code = main(['search', {str(index)!r}, 'red running shoes', '--json'])\n"
        "import faiss\n"
        "print('FAISS THREADS', faiss.omp_get_max_threads())\n"  # one query: no OpenMP pool to start
        f"print('LOADED', [m for m in {NOT_FOR_SEARCH!r} if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=_env(), timeout=180)
    assert done.returncode == 0, done.stderr
    assert '"id"' in done.stdout  # it answered
    assert done.stdout.strip().splitlines()[-2:] == ["FAISS THREADS 1", "LOADED []"]


def test_importing_vitrina_is_light():
    probe = ("import sys, vitrina\n"
             "heavy = ['faiss', 'onnxruntime', 'bm25s', 'scipy', 'pyarrow', 'PIL', 'pandas', 'torch', 'implicit']\n"
             "print([m for m in heavy if m in sys.modules]); vitrina.Index; print('faiss' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "True"]  # nothing until a name is used; the name still resolves


def test_a_search_hashes_only_the_encoder_files_it_loads(built, tmp_path):
    """The query encoder is the int8 graph: the fp32 graph beside it is neither read nor hashed (it cost a
    fresh search 0.1-0.2 s), while the int8 graph is still checked (tests/test_security_files.py)."""
    index, config = built
    copy = tmp_path / "idx"
    shutil.copytree(index, copy)
    before = ranked(copy, config)
    fp32 = copy / "encoders" / "text" / "model.onnx"
    fp32.write_bytes(b"not the graph that was exported")
    assert ranked(copy, config) == before  # answered from the int8 graph, with no complaint about fp32
    (copy / "encoders" / "text" / "model.int8.onnx").write_bytes(b"damaged")
    shutil.rmtree(Path(config.encoders.onnx_cache))  # nothing to repair from
    try:
        with pytest.raises(IndexStoreError, match=r"model\.int8\.onnx is damaged"):
            ranked(copy, config)
    finally:
        shutil.rmtree(Path(config.encoders.onnx_cache), ignore_errors=True)


def test_product_metadata_is_the_same_row_by_row_and_whole(built):
    from vitrina.index.products import ROWS_ALONE, ProductTable

    index, _ = built
    whole = ProductTable.load(index / "products.parquet").table.drop_columns(["id"]).to_pylist()
    table = ProductTable.load(index / "products.parquet")
    assert [table.metadata(r) for r in (3, 0, 3, -1)] == [whole[3], whole[0], whole[3], whole[-1]]
    assert [table.metadata(r) for r in range(len(whole))] == whole  # past ROWS_ALONE rows: the whole table
    assert len(whole) < ROWS_ALONE or table._records is not None
    with pytest.raises(IndexError):
        ProductTable.load(index / "products.parquet").metadata(len(whole))


def test_float16_storage_halves_the_vectors_and_keeps_the_answers(built, tiny_bert_dir, tmp_path):
    from dataclasses import replace

    from vitrina.index.config import IndexConfig

    index, config = built
    half = replace(config, index=IndexConfig(vector_dtype="float16"))
    catalog = write_csv(tmp_path / "products.csv", text_rows(80))
    build_index(catalog, tmp_path / "half", half)
    stored = np.load(tmp_path / "half" / "text.vectors.npy", mmap_mode="r")
    assert stored.dtype == np.float16 and not (tmp_path / "half" / "text.faiss").exists()
    assert (tmp_path / "half" / "text.vectors.npy").stat().st_size < 0.6 * (index / "text.vectors.npy").stat().st_size
    full, halved = ranked(index, config), ranked(tmp_path / "half", config)
    assert [[i for i, _ in q] for q in halved] == [[i for i, _ in q] for q in full]
    assert np.allclose([s for q in halved for _, s in q], [s for q in full for _, s in q], atol=2e-3)
    Index(tmp_path / "half", config).upsert([{"id": "new-1", "title": "red leather wallet"}])  # an edit keeps float16
    assert np.load(resolve_index_path(tmp_path / "half") / "text.vectors.npy", mmap_mode="r").dtype == np.float16
    assert "new-1" in [h.id for h in Index(tmp_path / "half", config).search("red leather wallet", k=5)]


def test_the_vector_dtype_flag_and_its_bad_values(built, tmp_path):
    from tests.helpers import run_cli
    from vitrina.index.config import IndexConfig

    index, config = built
    catalog = write_csv(tmp_path / "products.csv", text_rows(30))
    code, _, err = run_cli("index", catalog, "--out", tmp_path / "half", "--text-model", config.text_model,
                           "--image-model", "none", "--vector-dtype", "float16", "-q")
    assert code == 0, err
    assert np.load(tmp_path / "half" / "text.vectors.npy", mmap_mode="r").dtype == np.float16
    code, _, err = run_cli("index", catalog, "--out", tmp_path / "bad", "--vector-dtype", "int8")
    assert code == 2 and "--vector-dtype" in err and "Traceback" not in err
    with pytest.raises(IndexStoreError, match="vector_dtype"):
        IndexConfig(vector_dtype="float64")


def test_a_reindex_keeps_the_live_versions_vector_dtype_unless_told(built, tmp_path):
    from tests.helpers import run_cli

    index, config = built
    catalog = write_csv(tmp_path / "products.csv", text_rows(30))
    root = tmp_path / "root"
    flags = ("--text-model", config.text_model, "--image-model", "none", "-q")

    def stored() -> np.dtype:
        return np.load(resolve_index_path(root) / "text.vectors.npy", mmap_mode="r").dtype

    assert run_cli("reindex", catalog, "--out", root, "--vector-dtype", "float16", *flags)[0] == 0
    assert stored() == np.float16
    code, _, err = run_cli("reindex", catalog, "--out", root, *flags)  # no flag: the live version's float16
    assert code == 0, err
    assert stored() == np.float16
    assert run_cli("reindex", catalog, "--out", root, "--vector-dtype", "float32", *flags)[0] == 0
    assert stored() == np.float32
    assert run_cli("reindex", catalog, "--out", root, *flags)[0] == 0
    assert stored() == np.float32


def test_rewriting_a_space_in_place_drops_an_older_flat_file(built, tmp_path):
    """`write_space` (training a shared space, adding colour) on an older directory: the Flat file would go stale."""
    from vitrina.index.store import editing, write_space

    index, config = built
    older = older_layout(index, tmp_path / "older")
    space = IndexDirectory.load(older).spaces["text"]
    with editing(older) as tmp:
        write_space(tmp, "text", space)
    assert not (older / "text.faiss").exists() and (older / "text.vectors.npy").is_file()
    assert ranked(older, config) == ranked(index, config)


@pytest.mark.parametrize("method", ["lucene", "bm25l"])
def test_a_saved_bm25_index_scores_as_bm25s_does_without_importing_it(tmp_path, method):
    """StoredBM25 reads bm25s's files and gives its scores bit for bit (bm25l: with the non-occurrence term)."""
    import bm25s

    from vitrina.index.bm25_files import STOPWORDS_EN, StoredBM25
    from vitrina.index.lexical import LexicalConfig, LexicalIndex

    assert STOPWORDS_EN == bm25s.stopwords.STOPWORDS_EN
    texts = [row["title"] for row in text_rows(200, seed=3)]
    built = LexicalIndex.build(texts, LexicalConfig(method=method))
    built.save(tmp_path / "lexical")
    stored = StoredBM25.load(tmp_path / "lexical")
    reference = bm25s.BM25.load(str(tmp_path / "lexical"), mmap=False, show_progress=False)
    assert stored.vocab_dict == reference.vocab_dict and stored.scores["num_docs"] == 200
    rng, tokens = np.random.default_rng(0), len(stored.scores["indptr"]) - 1
    for ids in [[t] for t in range(tokens)] + rng.integers(0, tokens, (50, 3)).tolist():
        assert np.array_equal(stored.get_scores(ids), reference.get_scores(ids)), ids
    stored.save(tmp_path / "again")  # an index saved again (editing a loaded directory) reads back the same
    again = bm25s.BM25.load(str(tmp_path / "again"), mmap=False, show_progress=False)
    assert np.array_equal(again.get_scores([0, 1]), reference.get_scores([0, 1]))
    with pytest.raises(ValueError):
        stored.get_scores([tokens + 5])


def test_a_text_catalogs_product_table_is_built_without_importing_pandas():
    # pa.array of a Python list imports pandas first (0.2 s of every `vitrina index`); text columns need not
    probe = ("import sys\n"
             "from vitrina.index.products import ProductTable\n"
             "table = ProductTable.from_records(['a', 'b', 'c'], [{'title': 'red shoes'}, {'title': None, 'brand': 'Acme'}, {}])\n"
             "print('pandas' in sys.modules, table.table.schema.field('title').type, table.metadata(1))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(" ", 2) == ["False", "string", "{'title': None, 'brand': 'Acme'}\n"]


def test_product_columns_keep_their_types_and_mixed_ones_become_json():
    import pyarrow as pa

    from vitrina.index.products import ProductTable, string_column

    records = [{"title": "a", "price": 3, "tags": ["x"], "size": "M"}, {"title": "b", "price": 4.5, "tags": None, "size": 9}]
    table = ProductTable.from_records(["p1", "p2"], records)
    types = {f.name: f.type for f in table.table.schema}
    assert types == {"id": pa.string(), "title": pa.string(), "price": pa.float64(), "tags": pa.list_(pa.string()),
                     "size": pa.string()}
    assert table.metadata(1) == {"title": "b", "price": 4.5, "tags": None, "size": "9"}  # "M" and 9: JSON text
    assert table.metadata(0)["size"] == '"M"'
    values = ["é", None, "", "x" * 1000]
    assert string_column(values).equals(pa.array(values, type=pa.string()))


def test_the_command_line_leaves_its_objects_to_the_exit_not_to_a_last_collection(built):
    index, _ = built
    check = "import atexit, gc, sys\natexit.register(lambda: print('FROZEN', gc.get_freeze_count() > 0))\n"
    from_command_line = check + f"sys.argv = ['vitrina', 'info', {str(index)!r}]\nfrom vitrina.cli import main\nmain()\n"
    called = check + f"from vitrina.cli import main\nmain(['info', {str(index)!r}])\n"  # a caller's process: untouched
    for probe, frozen in ((from_command_line, "True"), (called, "False")):
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=_env(), timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == f"FROZEN {frozen}"


def test_building_bm25_writes_nothing_to_a_quiet_log():
    probe = ("import logging\nlogging.basicConfig(level=logging.WARNING)\n"
             "from vitrina.index.lexical import LexicalIndex\n"
             "LexicalIndex.build(['red running shoes', 'blue denim jacket'])\nprint('built')")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=_env(), timeout=120)
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "built", "")  # bm25s said "Building index from tokens"
