"""Bulk re-indexing: versioned roots, resumable shards, crashes at every stage, content-hash reuse,
upsert and delete, tuned ANN indexes, and the Ray engine. Real packaged encoders on demo products."""

from __future__ import annotations

import dataclasses

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vitrina.engine.config import VitrinaConfig
from vitrina.engine.errors import CatalogError
from vitrina.engine.build.reindex import WORK_DIR, ReindexConfig, reindex
from vitrina.engine.query.search import SearchSession
from vitrina.engine.build.updates import upsert
from vitrina.index import IndexDirectory
from vitrina.index.errors import IndexStoreError
from vitrina.index.versions import CURRENT, resolve_index_path, versions
from tests.helpers import REPO, demo_catalog, demo_rows, run_cli, write_csv

pytestmark = pytest.mark.slow
CONFIG = VitrinaConfig(progress=False)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    """60 demo products with photos, in a folder of their own."""
    return demo_catalog(tmp_path_factory.mktemp("reindex-catalog"), demo_rows()[:60])


@pytest.fixture(scope="module")
def baseline(catalog, tmp_path_factory) -> Path:
    """An uninterrupted re-index of `catalog` in shards of 8 (the reference for resumed runs)."""
    root = tmp_path_factory.mktemp("baseline") / "root"
    reindex(catalog, root, CONFIG, ReindexConfig(shard_size=8))
    return root


def same_index(a: Path, b: Path) -> None:
    """Two index directories hold the same products, vectors, FAISS answers and BM25 answers."""
    x, y = IndexDirectory.load(a), IndexDirectory.load(b)
    assert x.products.ids == y.products.ids
    assert x.content.text_hashes == y.content.text_hashes and x.content.image_hashes == y.content.image_hashes
    assert set(x.spaces) == set(y.spaces)
    for name in x.spaces:
        assert np.array_equal(np.asarray(x.spaces[name].vectors), np.asarray(y.spaces[name].vectors)), name
        assert np.array_equal(x.spaces[name].rows, y.spaces[name].rows), name
        queries = np.asarray(x.spaces[name].vectors[:5])
        assert np.array_equal(x.spaces[name].index.search(queries, 5)[1], y.spaces[name].index.search(queries, 5)[1])
    assert np.array_equal(x.lexical.search(["shoes"], 5)[1], y.lexical.search(["shoes"], 5)[1])


def test_reindex_publishes_a_versioned_root_that_every_command_reads(baseline, catalog):
    link = baseline / CURRENT
    assert link.is_symlink() and os.readlink(link).startswith("versions/")
    live = resolve_index_path(baseline)
    assert (live / "manifest.json").is_file() and (live / "content.parquet").is_file()
    assert not (baseline / WORK_DIR).exists()  # the shards go once the version is published
    session = SearchSession(baseline, CONFIG)
    assert len(session.products) == 60
    hits = session.search(["shoes"], k=3)[0]
    assert hits and all(h.id in session.products for h in hits)
    code, out, _ = run_cli("info", baseline)
    assert code == 0 and "products: 60" in out


def test_second_run_reuses_every_unchanged_vector_and_reencodes_changed_ones(baseline, catalog, tmp_path):
    root = tmp_path / "root"
    first = reindex(catalog, root, CONFIG, ReindexConfig(shard_size=8))
    assert first.encoded == {"text": 60, "image": 60} and first.reused == {"text": 0, "image": 0}
    again = reindex(catalog, root, CONFIG, ReindexConfig(shard_size=8))
    assert again.encoded == {"text": 0, "image": 0} and again.reused == {"text": 60, "image": 60}
    same_index(first.path, again.path)
    rows = demo_rows()[:60]
    rows[3]["title"] = "Completely different waterproof hiking boots"
    changed = write_csv(catalog.parent / "changed.csv", rows)
    third = reindex(changed, root, CONFIG, ReindexConfig(shard_size=8))
    assert third.encoded == {"text": 1, "image": 0} and third.reused == {"text": 59, "image": 60}
    hits = SearchSession(root, CONFIG).search(["waterproof hiking boots"], k=1)[0]
    assert hits[0].id == rows[3]["id"]


def test_old_versions_are_pruned_to_keep(catalog, tmp_path):
    root = tmp_path / "root"
    made = [reindex(catalog, root, CONFIG, ReindexConfig(shard_size=30, keep=2)).path for _ in range(3)]
    assert [p.name for p in versions(root)] == [p.name for p in made[1:]]
    assert resolve_index_path(root) == made[-1].resolve()


def _cli(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "vitrina"), *map(str, args)]


def test_kill_9_mid_run_then_resume_gives_the_identical_index(baseline, catalog, tmp_path):
    root = tmp_path / "root"
    process = subprocess.Popen(_cli("reindex", catalog, "--out", root, "--shard-size", 8, "-q"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while len(list((root / WORK_DIR).glob("shard-*.npz"))) < 2:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no shard written in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = len(list((root / WORK_DIR).glob("shard-*.npz")))
    assert 2 <= done_before < 8 and not (root / CURRENT).exists()  # killed mid-run: nothing published
    result = subprocess.run(_cli("reindex", catalog, "--out", root, "--shard-size", 8, "--resume", "--json", "-q"),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["resumed_shards"] == done_before and report["shards"] == 8  # only the shard in flight is redone
    same_index(resolve_index_path(root), resolve_index_path(baseline))


def test_resume_refuses_a_changed_catalog(catalog, tmp_path):
    root = tmp_path / "root"

    def stop(stage: str, shard: int) -> None:
        if stage == "encode" and shard == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reindex(catalog, root, CONFIG, ReindexConfig(shard_size=8), on_stage=stop)
    rows = demo_rows()[:61]
    other = write_csv(catalog.parent / "other.csv", rows)
    with pytest.raises(CatalogError, match="cannot resume.*catalog"):
        reindex(other, root, CONFIG, ReindexConfig(shard_size=8), resume=True)
    with pytest.raises(CatalogError, match="cannot resume.*shard_size"):
        reindex(catalog, root, CONFIG, ReindexConfig(shard_size=9), resume=True)
    private = dataclasses.replace(CONFIG, images=dataclasses.replace(CONFIG.images, allow_private_urls=True))
    with pytest.raises(CatalogError, match="cannot resume.*images"):  # the shards hold the other policy's refusals
        reindex(catalog, root, private, ReindexConfig(shard_size=8), resume=True)


CRASH_SCRIPT = """
import os, sys
sys.path.insert(0, {repo!r})
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.build.reindex import ReindexConfig, reindex
stage = sys.argv[3]
def crash(at, shard):
    if at == stage and shard in (-1, 1):
        os._exit(9)  # like kill -9: no cleanup, no finally blocks
reindex(sys.argv[1], sys.argv[2], VitrinaConfig(progress=False), ReindexConfig(shard_size=20), on_stage=crash)
"""


@pytest.mark.parametrize("stage", ["read", "encode", "index", "save", "publish"])
def test_a_crash_at_any_stage_leaves_a_loadable_live_index(baseline, catalog, tmp_path, stage):
    root = tmp_path / "root"
    reindex(catalog, root, CONFIG, ReindexConfig(shard_size=20))
    live_before = resolve_index_path(root)
    rows = demo_rows()[:60]
    rows[0]["title"] = "A brand new title for the first product"
    changed = write_csv(catalog.parent / f"crash-{stage}.csv", rows)
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT.format(repo=str(REPO)))
    result = subprocess.run([sys.executable, str(script), str(changed), str(root), stage], capture_output=True, timeout=600)
    assert result.returncode == 9, result.stderr.decode()
    live_after = resolve_index_path(root)
    session = SearchSession(root, CONFIG)  # loadable, whichever version is live
    assert len(session.products) == 60 and session.search(["shoes"], k=3)[0]
    if stage == "publish":  # the switch happened just before the crash: the new version is complete
        assert live_after != live_before
        assert session.directory.content.texts[0] == "A brand new title for the first product"
    else:
        assert live_after == live_before and (live_before / "manifest.json").is_file()
        assert session.directory.content.texts[0] != "A brand new title for the first product"
    finished = reindex(changed, root, CONFIG, ReindexConfig(shard_size=20), resume=True)
    assert SearchSession(root, CONFIG).directory.content.texts[0] == "A brand new title for the first product"
    assert finished.path == resolve_index_path(root)


def test_a_second_writer_is_refused_while_one_runs(catalog, tmp_path):
    root = tmp_path / "root"
    reindex(catalog, root, CONFIG, ReindexConfig(shard_size=30))
    seen = []

    def nested(stage: str, shard: int) -> None:
        if stage == "read" and shard == 0 and not seen:
            with pytest.raises(IndexStoreError, match="being changed by another"):
                upsert(root, catalog, CONFIG)
            seen.append(True)

    reindex(catalog, root, CONFIG, ReindexConfig(shard_size=30), on_stage=nested)
    assert seen


def test_reindex_refuses_a_plain_index_directory(catalog, tmp_path):
    plain = tmp_path / "plain"
    code, _, _ = run_cli("index", catalog, "--out", plain, "-q", "--image-model", "none")
    assert code == 0
    code, _, err = run_cli("reindex", catalog, "--out", plain, "-q")
    assert code != 0 and "single-version index" in err


def test_upsert_and_delete_change_single_products(catalog, tmp_path):
    root = tmp_path / "root"
    reindex(catalog, root, CONFIG, ReindexConfig(shard_size=30))
    rows = demo_rows()
    changed = [dict(rows[0]), dict(rows[1]), dict(rows[100])]  # two known (one edited), one new
    changed[0]["title"] = "Waterproof hiking boots for women, brand new"
    changes = demo_catalog(tmp_path / "changes", changed)
    code, out, err = run_cli("upsert", root, changes, "--json", "-q")
    assert code == 0, err
    report = json.loads(out)
    assert (report["added"], report["updated"], report["unchanged"], report["products"]) == (1, 1, 1, 61)
    assert report["encoded"] == {"text": 2, "image": 1}  # the edited text and the new product only
    session = SearchSession(root, CONFIG)
    assert session.search(["waterproof hiking boots for women"], k=1)[0][0].id == rows[0]["id"]
    assert rows[100]["id"] in session.products
    # the refilled FAISS index agrees with brute force over the stored vectors
    space = session.directory.spaces["text"]
    query = np.asarray(space.vectors[7:8])
    truth = space.rows[np.argsort(-(np.asarray(space.vectors) @ query[0]))[:5]]
    assert list(space.index.search(query, 5)[1][0]) == list(truth)

    ids = tmp_path / "gone.txt"
    ids.write_text(f"{rows[100]['id']}\n{rows[5]['id']}\nno-such-product\n")
    code, out, err = run_cli("delete", root, "--ids", ids, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["deleted"] == 2 and report["not_found"] == ["no-such-product"] and report["products"] == 59
    session = SearchSession(root, CONFIG)
    assert rows[5]["id"] not in session.products and rows[100]["id"] not in session.products
    assert all(h.id not in (rows[5]["id"], rows[100]["id"]) for h in session.search([rows[5]["title"]], k=10)[0])
    image = session.directory.spaces["image"]
    assert len(image.rows) == 59 and image.index.ntotal == 59 and image.rows.max() == 58


def test_update_errors_name_the_problem(catalog, tmp_path):
    code, _, err = run_cli("delete", tmp_path / "nowhere", "--ids", catalog)
    assert code != 0 and "not a versioned index root" in err
    root = tmp_path / "root"
    reindex(catalog, root, CONFIG, ReindexConfig(shard_size=60))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    code, _, err = run_cli("delete", root, "--ids", empty)
    assert code != 0 and "no product ids" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("id,title\n1,ok\n,missing id\n")
    before = resolve_index_path(root)
    code, _, err = run_cli("upsert", root, bad)
    assert code != 0 and "line 3" in err and "'id'" in err
    assert resolve_index_path(root) == before  # nothing published


def test_ray_engine_writes_the_same_index(catalog, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        local = reindex(catalog, tmp_path / "local", CONFIG, ReindexConfig(shard_size=30))
        remote = reindex(catalog, tmp_path / "ray", CONFIG, ReindexConfig(shard_size=30, engine="ray", ray_actors=2))
    finally:
        ray.shutdown()
    assert remote.encoded == {"text": 60, "image": 60}
    x, y = IndexDirectory.load(local.path), IndexDirectory.load(remote.path)
    assert x.products.ids == y.products.ids and x.content.image_hashes == y.content.image_hashes
    for name in ("text", "image"):
        a, b = np.asarray(x.spaces[name].vectors), np.asarray(y.spaces[name].vectors)
        assert a.shape == b.shape
        assert np.min(np.sum(a * b, axis=1)) > 0.98  # same models; batches differ, so int8 rounding may too
    assert np.allclose(np.asarray(x.spaces["colour"].vectors), np.asarray(y.spaces["colour"].vectors), atol=1e-6)
    assert np.array_equal(y.spaces["colour"].rows, y.spaces["image"].rows)  # one colour descriptor per photo, as local


def test_a_running_server_switches_to_the_new_current_version_on_reload(catalog, tmp_path):
    import httpx

    from tests.serving_util import KEY, running_server

    root = tmp_path / "root"
    first = reindex(catalog, root, CONFIG, ReindexConfig(shard_size=60))
    with running_server(root) as base:
        assert httpx.get(f"{base}/search", params={"q": "shoes"}).json()["index_version"] == first.version
        rows = demo_rows()[:60]
        rows[0]["title"] = "Waterproof hiking boots for women"
        second = reindex(write_csv(catalog.parent / "served.csv", rows), root, CONFIG, ReindexConfig(shard_size=60))
        still = httpx.get(f"{base}/search", params={"q": "shoes"}).json()
        assert still["index_version"] == first.version  # nothing changes under a running server by itself
        swap = httpx.post(f"{base}/admin/reload", headers={"X-API-Key": KEY}, timeout=120)
        assert swap.status_code == 200, swap.text
        body = httpx.get(f"{base}/search", params={"q": "waterproof hiking boots for women", "k": 1}).json()
        assert body["index_version"] == second.version and body["results"][0]["id"] == rows[0]["id"]
