"""Index-file integrity and tidy failure (issue 15, items 9, 10 and 12): private, checksummed encoder
copies; damaged or missing index files and full disks give clear errors and lose nothing; leftovers of
killed writers are cleaned; re-index checkpoints often. Real tiny encoders and real indexes throughout."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from vitrina.encoders import EncoderConfig
from vitrina.encoders.onnx_runtime import cache_entry, check_export
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.build.indexing import build_index
from vitrina.engine.build.reindex import WORK_DIR, ReindexConfig, reindex
from vitrina.engine.query.search import SearchSession
from vitrina.index import IndexDirectory, IndexManifest
from vitrina.index.errors import IndexStoreError
from vitrina.encoders.files import CHECKSUM_FILE, digest_file
from vitrina.index.versions import VERSIONS_DIR
from tests.helpers import REPO, WORDS, run_cli, write_csv

QUERIES = ["red running shoes", "leather wallet", "waterproof hiking boots", "cotton summer dress"]


def text_rows(n: int, seed: int = 0) -> list[dict]:
    """n products with titles of catalog words (the tiny BERT's vocabulary)."""
    rng = np.random.default_rng(seed)
    return [{"id": f"p{i:05d}", "title": " ".join(rng.choice(WORDS, size=int(rng.integers(3, 9))))} for i in range(n)]


def config_for(tiny_bert_dir: Path, cache: Path) -> VitrinaConfig:
    """Tiny BERT on ONNX Runtime, no images, exports cached in `cache` (never the user-wide cache)."""
    return VitrinaConfig(text_model=str(tiny_bert_dir), image_model=None, progress=False,
                         encoders=EncoderConfig(onnx_cache=cache))


def top_ids(index: Path, config: VitrinaConfig) -> list[list[str]]:
    """Dense top-5 product ids of QUERIES: the query encoder (int8 graph) and the stored vectors both count."""
    session = SearchSession(index, config)
    return [[h.id for h in hits] for hits in session.search(QUERIES, k=5, mode="dense")]


def damage(path: Path, length: int = 4 << 20) -> None:
    """Overwrite up to `length` bytes in the middle of a file, in place (as a stray write would)."""
    size = path.stat().st_size
    n = min(length, size // 2)
    with path.open("r+b") as f:
        f.seek(size // 4)
        f.write(np.random.default_rng(7).integers(0, 256, n, dtype=np.uint8).tobytes())


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("files-catalog") / "products.csv", text_rows(60))


@pytest.fixture(scope="module")
def built(catalog, tiny_bert_dir, tmp_path_factory) -> tuple[Path, Path]:
    """(an index of `catalog`, the ONNX cache it was built with)."""
    base = tmp_path_factory.mktemp("files-index")
    cache = base / "cache"
    build_index(catalog, base / "idx", config_for(tiny_bert_dir, cache))
    return base / "idx", cache


# --- item 9: encoder files are private copies with recorded checksums ---------------------------------------


def test_each_index_keeps_a_private_checksummed_copy_of_its_encoders(catalog, tiny_bert_dir, tmp_path):
    cache = tmp_path / "cache"
    config = config_for(tiny_bert_dir, cache)
    build_index(catalog, tmp_path / "a", config)
    build_index(catalog, tmp_path / "b", config)
    kept_a, kept_b = tmp_path / "a" / "encoders" / "text", tmp_path / "b" / "encoders" / "text"
    entry = cache_entry("text", IndexManifest.load(tmp_path / "a").spaces["text"].encoder, config.encoders)
    for name in ("model.onnx", "model.int8.onnx", "tokenizer.json", "vitrina_onnx.json"):
        a, b, c = (kept_a / name).stat(), (kept_b / name).stat(), (entry / name).stat()
        assert a.st_nlink == 1 and len({a.st_ino, b.st_ino, c.st_ino}) == 3, name  # no shared inode
    before = top_ids(tmp_path / "b", config)
    digests = {path: digest_file(path) for path in (kept_b / "model.int8.onnx", entry / "model.int8.onnx")}
    damage(kept_a / "model.int8.onnx")
    assert {path: digest_file(path) for path in digests} == digests  # the damage did not spread
    assert top_ids(tmp_path / "b", config) == before
    recorded = IndexManifest.load(tmp_path / "b").encoder_files["text"]
    assert set(recorded) >= {"model.onnx", "model.int8.onnx", "tokenizer.json", "vitrina_onnx.json"}
    assert all(digest_file(kept_b / name) == digest for name, digest in recorded.items())


def test_a_damaged_kept_encoder_is_repaired_from_a_matching_cache_else_refused(catalog, tiny_bert_dir, tmp_path,
                                                                              monkeypatch):
    cache = tmp_path / "cache"
    config = config_for(tiny_bert_dir, cache)
    build_index(catalog, tmp_path / "idx", config)
    before = top_ids(tmp_path / "idx", config)
    model = tmp_path / "idx" / "encoders" / "text" / "model.int8.onnx"
    good = digest_file(model)
    damage(model)
    assert top_ids(tmp_path / "idx", config) == before  # repaired from the cache entry, which matches the record
    assert digest_file(model) == good == IndexManifest.load(tmp_path / "idx").encoder_files["text"]["model.int8.onnx"]

    damage(model)
    shutil.rmtree(cache)  # nothing to repair from
    with pytest.raises(IndexStoreError, match=r"model\.int8\.onnx is damaged"):
        top_ids(tmp_path / "idx", config)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the CLI's default cache: empty
    code, _, err = run_cli("search", tmp_path / "idx", "red shoes", "--mode", "dense")
    assert code == 1 and err.startswith("vitrina: error: ") and "model.int8.onnx is damaged" in err
    assert "Traceback" not in err


def test_a_damaged_cache_entry_is_exported_again_never_copied(catalog, tiny_bert_dir, tmp_path):
    cache = tmp_path / "cache"
    config = config_for(tiny_bert_dir, cache)
    build_index(catalog, tmp_path / "a", config)
    expected = top_ids(tmp_path / "a", config)
    entry = cache_entry("text", IndexManifest.load(tmp_path / "a").spaces["text"].encoder, config.encoders)
    damage(entry / "model.int8.onnx")
    damaged = digest_file(entry / "model.int8.onnx")
    build_index(catalog, tmp_path / "b", config)
    assert check_export(entry) is None  # exported again
    kept = tmp_path / "b" / "encoders" / "text" / "model.int8.onnx"
    assert digest_file(kept) != damaged
    assert digest_file(kept) == IndexManifest.load(tmp_path / "b").encoder_files["text"]["model.int8.onnx"]
    assert top_ids(tmp_path / "b", config) == expected


def test_a_damaged_export_directory_given_as_the_model_is_refused(built, tmp_path):
    index, cache = built
    export = tmp_path / "export"
    shutil.copytree(next(d for d in sorted(cache.iterdir()) if (d / "vitrina_onnx.json").is_file()), export)  # not optimised/
    assert (export / CHECKSUM_FILE).is_file()
    damage(export / "model.onnx")
    code, _, err = run_cli("search", index, "red shoes", "--text-model", export, "--mode", "dense")
    assert code == 1 and "model.onnx is damaged" in err and "Traceback" not in err


# --- item 10: damaged files, full disks and leftovers ------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _lexical_file(index: Path) -> Path:
    return max((index / "lexical").iterdir(), key=lambda p: p.stat().st_size)


def _older_flat_file(index: Path) -> None:
    """The Flat index's own file beside its vectors, as an older Vitrina wrote it (now built at load instead)."""
    IndexDirectory.load(index).spaces["text"].index.save(index / "text.faiss")


DAMAGES = {
    "products.parquet truncated": lambda d: (_truncate(d / "products.parquet"), "products.parquet")[1],
    "text.vectors.npy truncated": lambda d: (_truncate(d / "text.vectors.npy"), "text.vectors.npy")[1],
    "text.rows.npy missing": lambda d: ((d / "text.rows.npy").unlink(), "text.rows.npy")[1],
    "text.faiss of an older index truncated": lambda d: (_older_flat_file(d), _truncate(d / "text.faiss"), "text.faiss")[2],
    "lexical file truncated": lambda d: (_truncate(_lexical_file(d)), "lexical")[1],
}


@pytest.mark.parametrize("how", list(DAMAGES))
def test_a_damaged_index_file_gives_an_error_naming_it(built, tmp_path, how):
    index = tmp_path / "idx"
    shutil.copytree(built[0], index)
    named = DAMAGES[how](index)
    code, _, err = run_cli("search", index, "red shoes", "--mode", "lexical")
    assert code == 1, err
    assert err.startswith("vitrina: error: ") and named in err and "Traceback" not in err


@contextlib.contextmanager
def small_disk(path: Path, size_kb: int) -> Iterator[Path]:
    """A real filesystem of `size_kb` KiB at `path` (tmpfs), so writes fail with ENOSPC."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"a full disk is tested on a small tmpfs, and mount was refused here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path, leave_kb: int) -> None:
    """Fill `disk` up to `leave_kb` KiB of free space."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with (disk / "filler").open("wb") as f:
        f.write(b"\0" * max(0, free - leave_kb * 1024))


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_a_full_disk_during_index_is_a_clear_error_and_keeps_the_old_index(built, catalog, tiny_bert_dir, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    size_kb = tree_size(built[0]) // 1024 + 256
    with small_disk(tmp_path / "disk", size_kb) as disk:
        small = write_csv(tmp_path / "small.csv", text_rows(5, seed=3))
        flags = ("--text-model", tiny_bert_dir, "--image-model", "none", "-q")
        assert run_cli("index", small, "--out", disk / "idx", *flags)[0] == 0
        fill(disk, leave_kb=tree_size(disk / "idx") // 2048)  # room for half the small index: not the big one
        code, out, err = run_cli("index", catalog, "--out", disk / "idx", *flags)
        assert code == 1, out + err
        assert err.startswith("vitrina: error: ") and "No space left on device" in err and "Traceback" not in err
        assert err.count("No space left") == 1 and "[Errno" not in err  # one reason, said plainly
        assert f"({disk}" in err  # and where
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "idx"]  # nothing half-written beside it
        assert len(IndexDirectory.load(disk / "idx").products) == 5  # the old index is intact


def _events(rows: list[dict]) -> list[dict]:
    return [{"user_id": f"u{i % 15}", "product_id": rows[(i * 7) % len(rows)]["id"], "event": "purchase",
             "timestamp": f"2024-05-{i % 28 + 1:02d}"} for i in range(300)]


def test_a_full_disk_during_events_add_is_a_clear_error(built, catalog, tmp_path):
    events = write_csv(tmp_path / "events.csv", _events(text_rows(60)))
    with small_disk(tmp_path / "disk", tree_size(built[0]) // 1024 + 256) as disk:
        shutil.copytree(built[0], disk / "idx")
        fill(disk, leave_kb=4)
        code, out, err = run_cli("events", "add", disk / "idx", events)
        assert code == 1, out + err
        assert err.startswith("vitrina: error: ") and "No space left on device" in err and "Traceback" not in err
        assert not [p for p in (disk / "idx").iterdir() if ".tmp-" in p.name]  # nothing half-written
        assert not (disk / "idx" / "behaviour").exists()
        assert len(IndexDirectory.load(disk / "idx").products) == 60


def test_a_full_disk_during_post_events_is_a_json_503_without_paths(built, tmp_path):
    from fastapi.testclient import TestClient

    from vitrina.serving.app import create_app
    from vitrina.serving.config import ServingConfig
    from tests.serving_util import KEY

    rows = text_rows(60)
    with small_disk(tmp_path / "disk", tree_size(built[0]) // 1024 + 256) as disk:
        shutil.copytree(built[0], disk / "idx")
        config = VitrinaConfig(progress=False, encoders=EncoderConfig(onnx_cache=built[1]))
        with TestClient(create_app(disk / "idx", config, ServingConfig(api_key=KEY)), raise_server_exceptions=False) as c:
            for _ in range(600):
                if c.get("/readyz").status_code == 200:
                    break
                time.sleep(0.1)
            fill(disk, leave_kb=4)
            answer = c.post("/events", json={"events": _events(rows)[:100]}, headers={"X-API-Key": KEY})
        assert answer.status_code == 503, answer.text
        detail = answer.json()["detail"]
        assert "No space left on device" in detail and str(disk) not in detail and str(tmp_path) not in detail


KILLED_WRITER = """
import os, sys
sys.path.insert(0, {repo!r})
import shutil
import vitrina.index.store as store
from vitrina.index import IndexDirectory
where, how = sys.argv[1], sys.argv[2]
store.clean_leftovers = lambda target: []  # let the leftovers of the three killed writers pile up
directory = IndexDirectory.load(where)
if how == "save":  # killed after writing the whole new copy, before the swap
    store.replace_directory = lambda tmp, out: os._exit(9)
    directory.save(where)
elif how == "edit":  # killed while editing
    with store.editing(where) as tmp:
        os._exit(9)
elif how == "swap":  # killed after the swap, while deleting the old copy
    shutil.rmtree = lambda *a, **k: os._exit(9)
    directory.save(where)
"""


def test_leftovers_of_killed_writers_go_at_the_next_write_live_data_and_live_writers_stay(built, catalog,
                                                                                          tiny_bert_dir, tmp_path):
    index = tmp_path / "idx"
    shutil.copytree(built[0], index)
    script = tmp_path / "killed.py"
    script.write_text(KILLED_WRITER.format(repo=str(REPO)))
    for how in ("save", "edit", "swap"):
        result = subprocess.run([sys.executable, str(script), str(index), how], capture_output=True, timeout=300)
        assert result.returncode == 9, result.stderr.decode()
    left = sorted(p.name.split("-")[0] for p in tmp_path.iterdir() if p.name.startswith(".idx."))
    assert left == [".idx.edit", ".idx.old", ".idx.tmp"]  # each holds a whole index
    live_writer = tmp_path / f".idx.tmp-{os.getpid()}-0000live"  # this process is alive: not abandoned
    live_writer.mkdir()
    unnamed_old, unnamed_new = tmp_path / ".idx.tmp-0ld0ld00", tmp_path / ".idx.old-n3wn3w00"  # no pid in the name
    unnamed_old.mkdir()
    unnamed_new.mkdir()
    os.utime(unnamed_old, (time.time() - 7200, time.time() - 7200))
    code, _, err = run_cli("index", catalog, "--out", index, "--text-model", tiny_bert_dir, "--image-model", "none",
                           "-q")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".idx.")) == sorted(
        [live_writer.name, unnamed_new.name])
    assert len(IndexDirectory.load(index).products) == 60


def test_unfinished_builds_of_a_killed_reindex_go_at_the_next_write(catalog, tiny_bert_dir, tmp_path):
    config = config_for(tiny_bert_dir, tmp_path / "cache")
    root = tmp_path / "root"
    reindex(catalog, root, config)
    script = tmp_path / "killed.py"
    script.write_text(f"""
import os, sys
sys.path.insert(0, {str(REPO)!r})
from pathlib import Path
import vitrina.index.store as store
from vitrina.encoders import EncoderConfig
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.build.reindex import reindex
store.replace_directory = lambda tmp, out: os._exit(9)  # killed with the new version written, before its rename
reindex({str(catalog)!r}, {str(root)!r}, VitrinaConfig(text_model={str(tiny_bert_dir)!r}, image_model=None,
        progress=False, encoders=EncoderConfig(onnx_cache=Path({str(tmp_path / 'cache')!r}))))
""")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=300)
    assert result.returncode == 9, result.stderr.decode()
    assert [p for p in (root / VERSIONS_DIR).iterdir() if p.name.startswith("..build-")]
    reindex(catalog, root, config)
    assert not [p for p in (root / VERSIONS_DIR).iterdir() if p.name.startswith(".")]


# --- item 12: re-index checkpoints about every twentieth of the catalog ------------------------------------------


def test_reindex_checkpoints_a_twentieth_of_the_catalog_and_resumes_identically(tiny_bert_dir, tmp_path):
    catalog = write_csv(tmp_path / "products.csv", text_rows(4200, seed=1))
    config = config_for(tiny_bert_dir, tmp_path / "cache")
    full = reindex(catalog, tmp_path / "full", config)
    assert full.shards == 20  # 210 products each, not one shard of 10,000

    def stop(stage: str, shard: int) -> None:
        if stage == "encode" and shard == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reindex(catalog, tmp_path / "resumed", config, on_stage=stop)
    assert len(list((tmp_path / "resumed" / WORK_DIR).glob("shard-*.npz"))) == 11
    resumed = reindex(catalog, tmp_path / "resumed", config, resume=True)
    assert resumed.resumed_shards == 11 and resumed.shards == 20  # only 9 of 20 shards were encoded again
    a, b = IndexDirectory.load(full.path), IndexDirectory.load(resumed.path)
    assert np.asarray(a.spaces["text"].vectors).tobytes() == np.asarray(b.spaces["text"].vectors).tobytes()
    assert reindex(catalog, tmp_path / "explicit", config, ReindexConfig(shard_size=1000)).shards == 5  # N wins
    code, out, _ = run_cli("reindex", "--help")
    assert "automatic" in out


class _CountingSha256:
    """hashlib as encoders.files sees it, counting the files it hashes."""

    def __init__(self) -> None:
        import hashlib

        self.hashlib, self.calls = hashlib, 0

    def sha256(self, *args):
        self.calls += 1
        return self.hashlib.sha256(*args)


def test_a_file_is_hashed_again_once_written_and_a_copy_of_a_hashed_one_is_not_read(tmp_path, monkeypatch):
    import hashlib

    import vitrina.encoders.files as files

    counting = _CountingSha256()
    monkeypatch.setattr(files, "hashlib", counting)
    model = tmp_path / "model.onnx"
    model.write_bytes(b"a" * 5000)
    first = files.digest_file(model)
    assert first == hashlib.sha256(b"a" * 5000).hexdigest() and files.digest_file(model) == first
    assert counting.calls == 1  # unchanged: not read again
    (tmp_path / "tmp").mkdir()
    files.copy_file(model, tmp_path / "tmp" / "model.onnx")
    (tmp_path / "tmp").rename(tmp_path / "index")  # as a saved index directory is swapped in
    moved = tmp_path / "index" / "model.onnx"
    assert files.digest_file(moved) == first and counting.calls == 1  # copied from a hashed file: not read
    time.sleep(0.02)  # past the file system's timestamp granularity
    with open(moved, "r+b") as f:  # damaged in place, same size
        f.write(b"b")
    assert files.digest_file(moved) == hashlib.sha256(b"b" + b"a" * 4999).hexdigest()
    assert files.digest_file(model) == first and counting.calls == 2
    other = tmp_path / "other.onnx"
    other.write_bytes(b"c" * 10)
    files.copy_file(other, tmp_path / "other-copy.onnx")  # never hashed: its copy is read
    assert files.digest_file(tmp_path / "other-copy.onnx") == hashlib.sha256(b"c" * 10).hexdigest()
    assert counting.calls == 3
