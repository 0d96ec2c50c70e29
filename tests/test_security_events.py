"""Shoppers' data (issue 15): pseudonymised user ids, idempotent durable events, forgetting a shopper,
retention, the in-memory feedback loop of the server, and behaviour carried over catalog changes.
Real tiny BERT encoders, real FAISS indexes and the real implicit ALS."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import numpy as np

from vitrina.engine.learn.behaviour import BEHAVIOUR_DIR, BehaviourModel, BehaviourConfig
from vitrina.engine.learn.event_store import EVENTS_DIR, LOG_FILE
from vitrina.engine.data.events import read_events
from vitrina.engine.learn.pseudonyms import KEY_FILE, Pseudonyms
from vitrina.index.versions import resolve_index_path, versions
from tests.helpers import demo_rows, run_cli, write_csv
from tests.serving_util import KEY

KEYED = {"X-API-Key": KEY}  # per-shopper reads need the key

SHOPPER = "shopper-Zq81x@example.org"  # distinctive, so a byte search cannot hit it by chance
FACTORS = ("--factors", "4", "--iterations", "10")


def catalog_of(folder: Path, n: int = 30, start: int = 0) -> tuple[Path, list[str]]:
    rows = demo_rows()[start : start + n]
    folder.mkdir(parents=True, exist_ok=True)
    return write_csv(folder / "products.csv", [{"id": r["id"], "title": r["title"]} for r in rows]), [r["id"] for r in rows]


def events_for(ids: list[str], users: int = 12, seed: int = 0, shopper: bool = True) -> list[dict]:
    """Two clusters of shoppers over the first 20 products, and SHOPPER buying from both."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        cluster = ids[:10] if u % 2 else ids[10:20]
        for j, product in enumerate(rng.choice(cluster, size=4, replace=False)):
            rows.append({"user_id": f"user{u}", "product_id": product, "event": ["view", "click", "cart", "purchase"][j],
                         "timestamp": f"2024-03-{1 + (u + j) % 27:02d}T10:00:00"})
        if shopper and u == users // 2:
            rows += [{"user_id": SHOPPER, "product_id": p, "event": "purchase", "timestamp": f"2024-03-1{k}T12:00:00"}
                     for k, p in enumerate((ids[0], ids[11], ids[25]))]
    return rows


def plain_index(tiny_bert_dir, tmp_path: Path, name: str = "idx") -> tuple[Path, list[str]]:
    catalog, ids = catalog_of(tmp_path / f"{name}-catalog")
    index = tmp_path / name
    code, _, err = run_cli("index", catalog, "--out", index, "--text-model", tiny_bert_dir, "--image-model", "none", "-q")
    assert code == 0, err
    return index, ids


def add(index: Path, events_file: Path, *flags: str) -> dict:
    code, out, err = run_cli("events", "add", index, events_file, "--json", *FACTORS, *flags)
    assert code == 0, err
    return json.loads(out)


def files_containing(root: Path, needle: str) -> list[str]:
    """Every file under `root` whose bytes contain `needle`."""
    data = needle.encode("utf-8")
    return [str(p) for p in root.rglob("*") if p.is_file() and data in p.read_bytes()]


def behaviour_of(index: Path) -> BehaviourModel:
    return BehaviourModel.load(resolve_index_path(index) / BEHAVIOUR_DIR)


def product_vectors(model: BehaviourModel) -> dict[str, np.ndarray]:
    return {pid: model.item_factors[i] for i, pid in enumerate(model.product_ids) if model.has_vector[i]}


# pseudonymised shoppers


def test_raw_user_ids_never_reach_disk_and_lookups_by_raw_id_still_work(tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("VITRINA_USER_KEY", raising=False)
    index, ids = plain_index(tiny_bert_dir, tmp_path)
    write_csv(tmp_path / "events.csv", events_for(ids))
    add(index, tmp_path / "events.csv")
    key = index / EVENTS_DIR / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert files_containing(index, SHOPPER) == [] and files_containing(index, "user3") == []
    hashed = Pseudonyms(bytes.fromhex(key.read_text().strip())).user(SHOPPER)
    assert files_containing(index, hashed)  # stored under its keyed hash
    code, out, err = run_cli("recommend", index, "--user", SHOPPER, "--json")
    assert code == 0 and json.loads(out)["personalised"] is True, err
    code, out, err = run_cli("search", index, "shirt", "--user", SHOPPER, "--json")
    assert code == 0 and json.loads(out)["personalised"] is True, err


def test_the_key_can_come_from_the_environment_and_a_changed_key_is_refused(tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("VITRINA_USER_KEY", "a-long-enough-secret-1234")
    index, ids = plain_index(tiny_bert_dir, tmp_path)
    write_csv(tmp_path / "events.csv", events_for(ids))
    add(index, tmp_path / "events.csv")
    assert not (index / EVENTS_DIR / KEY_FILE).exists()
    assert files_containing(index, Pseudonyms(b"a-long-enough-secret-1234").user(SHOPPER))
    assert json.loads(run_cli("recommend", index, "--user", SHOPPER, "--json")[1])["personalised"] is True
    monkeypatch.setenv("VITRINA_USER_KEY", "another-secret-altogether")
    code, _, err = run_cli("events", "add", index, tmp_path / "events.csv")
    assert code == 1 and "not the one" in err and "Traceback" not in err
    monkeypatch.setenv("VITRINA_USER_KEY", "short")
    code, _, err = run_cli("recommend", index, "--user", SHOPPER)
    assert code == 1 and "VITRINA_USER_KEY must be at least 16 characters" in err


def test_a_model_saved_with_raw_ids_is_read_then_migrated_on_the_first_write(tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("VITRINA_USER_KEY", raising=False)
    index, ids = plain_index(tiny_bert_dir, tmp_path)
    write_csv(tmp_path / "events.csv", events_for(ids))
    legacy = BehaviourModel.fit(read_events(tmp_path / "events.csv", {p: i for i, p in enumerate(ids)}), len(ids),
                                BehaviourConfig(factors=4, iterations=10))
    legacy.product_ids = ids
    legacy.save(index / BEHAVIOUR_DIR)  # the format written before issue 15: raw ids, no log
    assert files_containing(index, SHOPPER)
    before = json.loads(run_cli("recommend", index, "--user", SHOPPER, "--json")[1])
    assert before["personalised"] is True  # reads keep working
    write_csv(tmp_path / "more.csv", [{"user_id": "newcomer", "product_id": ids[3], "event": "view", "timestamp": "2024-04-01"}])
    assert add(index, tmp_path / "more.csv")["events"] == 1
    assert files_containing(index, SHOPPER) == []  # migrated: hashed in the snapshot, raw files gone
    model = behaviour_of(index)
    assert model.keyed and len(model.users) == len(legacy.users) + 1
    assert np.isclose(model.interactions.sum(), legacy.interactions.sum() + 1.0)  # the old events are in the log
    assert json.loads(run_cli("recommend", index, "--user", SHOPPER, "--json")[1])["personalised"] is True


# idempotent, durable events


def test_events_add_rerun_adds_nothing_even_after_a_kill_right_after_the_commit(tiny_bert_dir, tmp_path, monkeypatch):
    from vitrina.engine.learn.shoppers import ShopperState

    index, ids = plain_index(tiny_bert_dir, tmp_path)
    events = events_for(ids)
    write_csv(tmp_path / "events.csv", events)
    first = add(index, tmp_path / "events.csv")
    total = float(behaviour_of(index).interactions.sum())
    again = add(index, tmp_path / "events.csv")
    assert again["events"] == 0 and again["duplicates"] == len(events) == first["events"]
    assert np.isclose(behaviour_of(index).interactions.sum(), total)

    # a second file: the run dies after its events are committed to the log, before its snapshot
    more = [{"user_id": f"late{u}", "product_id": ids[u], "event": "cart", "timestamp": "2024-04-02"} for u in range(5)]
    write_csv(tmp_path / "more.csv", more)

    def killed(self, config=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(ShopperState, "snapshot", killed)
    code, _, err = run_cli("events", "add", index, tmp_path / "more.csv")
    assert code == 130
    monkeypatch.undo()
    logged = (index / EVENTS_DIR / LOG_FILE).read_text().splitlines()
    assert len(logged) == 1 + len(events) + len(more)  # header + every acknowledged event
    rerun = add(index, tmp_path / "more.csv")
    assert rerun["events"] == 0 and rerun["duplicates"] == len(more)
    model = behaviour_of(index)
    assert np.isclose(model.interactions.sum(), total + 4.0 * len(more))  # counted once
    assert len((index / EVENTS_DIR / LOG_FILE).read_text().splitlines()) == len(logged)


def test_a_torn_last_line_is_ignored_and_cut_by_the_next_append(tiny_bert_dir, tmp_path):
    index, ids = plain_index(tiny_bert_dir, tmp_path)
    write_csv(tmp_path / "events.csv", events_for(ids))
    add(index, tmp_path / "events.csv")
    log = index / EVENTS_DIR / LOG_FILE
    with log.open("ab") as f:
        f.write(b'{"id":"deadbeef","user":"x","prod')  # a crash in the middle of an append
    assert json.loads(run_cli("recommend", index, "--user", SHOPPER, "--json")[1])["personalised"] is True
    write_csv(tmp_path / "more.csv", [{"user_id": "n", "product_id": ids[1], "event": "view", "timestamp": "2024-04-01"}])
    assert add(index, tmp_path / "more.csv")["events"] == 1
    assert all(json.loads(line) for line in log.read_text().splitlines())


# forget a shopper


def _versioned_root(tiny_bert_dir, tmp_path: Path) -> tuple[Path, list[str], Path]:
    catalog, ids = catalog_of(tmp_path / "catalog")
    root = tmp_path / "root"
    code, _, err = run_cli("reindex", catalog, "--out", root, "--text-model", tiny_bert_dir, "--image-model", "none", "-q")
    assert code == 0, err
    return root, ids, catalog


def test_forget_removes_the_shopper_everywhere_and_equals_an_index_that_never_saw_them(tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("VITRINA_USER_KEY", raising=False)
    root, ids, catalog = _versioned_root(tiny_bert_dir, tmp_path)
    events = events_for(ids)
    half = len(events) // 2
    write_csv(tmp_path / "a.csv", events[:half])
    write_csv(tmp_path / "b.csv", events[half:])
    add(root, tmp_path / "a.csv")
    add(root, tmp_path / "b.csv")  # folded in, not refit: forgetting must still give the exact refit
    changed = catalog_of(tmp_path / "changes", n=1, start=40)[0]
    code, _, err = run_cli("upsert", root, changed, "-q")  # a second version, holding the shopper too
    assert code == 0, err
    assert len(versions(root)) == 2
    hashed = Pseudonyms(bytes.fromhex((root / EVENTS_DIR / KEY_FILE).read_text().strip())).user(SHOPPER)
    assert files_containing(root, hashed)

    code, out, err = run_cli("events", "forget", root, "--user", SHOPPER, "--json")
    assert code == 0, err
    gone = json.loads(out)
    assert gone["user_found"] is True and gone["events_removed"] == 3 and len(gone["versions_refit"]) == 2
    assert files_containing(root, SHOPPER) == [] and files_containing(root, hashed) == []
    code, out, err = run_cli("recommend", root, "--user", SHOPPER, "--json")
    assert code == 0 and json.loads(out)["personalised"] is False

    # an index that never saw the shopper's events: the same remaining events, added once
    never, _ = plain_index(tiny_bert_dir, tmp_path, "never")
    write_csv(tmp_path / "without.csv", [e for e in events if e["user_id"] != SHOPPER])
    add(never, tmp_path / "without.csv")
    expected = product_vectors(behaviour_of(never))
    for version in versions(root):
        got = product_vectors(BehaviourModel.load(version / BEHAVIOUR_DIR))
        assert set(got) == set(expected)
        for pid, vector in expected.items():
            assert np.allclose(got[pid], vector, atol=1e-5), pid
    again = json.loads(run_cli("events", "forget", root, "--user", SHOPPER, "--json")[1])
    assert again["user_found"] is False and again["events_removed"] == 0


def test_delete_user_over_http_needs_the_key_and_forgets_the_shopper(tiny_bert_dir, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from vitrina.engine.config import VitrinaConfig
    from vitrina.serving.app import create_app
    from vitrina.serving.config import ServingConfig
    from tests.serving_util import KEY

    monkeypatch.delenv("VITRINA_USER_KEY", raising=False)
    index, ids = plain_index(tiny_bert_dir, tmp_path)
    with TestClient(create_app(index, VitrinaConfig(text_model=str(tiny_bert_dir), image_model=None, progress=False),
                               ServingConfig(api_key=KEY))) as client:
        for _ in range(600):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.1)
        posted = client.post("/events", json={"events": events_for(ids)}, headers={"X-API-Key": KEY})
        assert posted.status_code == 200, posted.text
        assert client.get(f"/users/{SHOPPER}/recommendations", headers=KEYED).json()["personalised"] is True
        assert client.delete(f"/users/{SHOPPER}").status_code == 401
        gone = client.delete(f"/users/{SHOPPER}", headers={"X-API-Key": KEY})
        assert gone.status_code == 200, gone.text
        body = gone.json()
        assert body["user_found"] is True and body["events_removed"] == 3 and body["index_version"]
        assert client.get(f"/users/{SHOPPER}/recommendations", headers=KEYED).json()["personalised"] is False
        assert client.get("/users/user3/recommendations", headers=KEYED).json()["personalised"] is True
    hashed = Pseudonyms(bytes.fromhex((index / EVENTS_DIR / KEY_FILE).read_text().strip())).user(SHOPPER)
    assert files_containing(index, SHOPPER) == [] and files_containing(index, hashed) == []


# retention


def test_retention_drops_old_events_from_the_log_and_the_model(tiny_bert_dir, tmp_path):
    index, ids = plain_index(tiny_bert_dir, tmp_path)
    now = time.time()
    recent = [{"user_id": f"r{u}", "product_id": ids[u], "event": "purchase", "timestamp": now - 86_400 * 2}
              for u in range(6)]
    old = [{"user_id": f"o{u}", "product_id": ids[10 + u], "event": "purchase", "timestamp": now - 86_400 * 200}
           for u in range(6)]
    write_csv(tmp_path / "events.csv", recent + old)
    answer = add(index, tmp_path / "events.csv", "--events-max-age", "90")
    assert answer["events"] == 12
    log = (index / EVENTS_DIR / LOG_FILE).read_text().splitlines()
    assert len(log) == 1 + 6  # the header and the recent events
    model = behaviour_of(index)
    assert len(model.users) == 6 and set(np.flatnonzero(model.has_vector)) == set(range(6))
    assert json.loads(run_cli("recommend", index, "--user", "o1", "--json")[1])["personalised"] is False
    code, _, err = run_cli("events", "add", index, tmp_path / "events.csv", "--events-max-age", "-3")
    assert code == 1 and "--events-max-age must be a positive number of days" in err


# item 8: catalog changes keep learned data


def test_upsert_delete_and_reindex_carry_behaviour_and_trained_heads(tiny_bert_dir, tmp_path):
    root, ids, catalog = _versioned_root(tiny_bert_dir, tmp_path)
    write_csv(tmp_path / "events.csv", events_for(ids))
    add(root, tmp_path / "events.csv")
    code, out, err = run_cli("train", root, "--epochs", "2", "--dim", "8", "--json", "-q")
    assert code == 0, err
    before = product_vectors(behaviour_of(root))

    def still_learned(report: dict) -> None:
        assert report["dropped_spaces"] == [], report
        code, out, err = run_cli("recommend", root, "--user", SHOPPER, "--json")
        assert code == 0 and json.loads(out)["personalised"] is True, err
        code, out, err = run_cli("search", root, "shirt", "--space", "fused", "--json")
        assert code == 0 and json.loads(out)["results"], err
        model = behaviour_of(root)
        for pid, vector in before.items():
            if pid in model.product_ids:
                assert np.allclose(product_vectors(model)[pid], vector), pid

    changed = catalog_of(tmp_path / "changes", n=1, start=40)[0]
    code, out, err = run_cli("upsert", root, changed, "--json", "-q")
    assert code == 0, err
    still_learned(json.loads(out))
    new_id = demo_rows()[40]["id"]
    assert new_id in behaviour_of(root).product_ids and new_id not in product_vectors(behaviour_of(root))

    (tmp_path / "gone.txt").write_text(f"{ids[0]}\n")
    code, out, err = run_cli("delete", root, "--ids", tmp_path / "gone.txt", "--json")
    assert code == 0, err
    still_learned(json.loads(out))
    assert ids[0] not in behaviour_of(root).product_ids
    assert any(f'"product":"{ids[0]}"' in line for line in (root / EVENTS_DIR / LOG_FILE).read_text().splitlines())

    code, out, err = run_cli("reindex", catalog, "--out", root, "--text-model", tiny_bert_dir, "--image-model", "none",
                             "--json", "-q")
    assert code == 0, err
    assert {"fused", "shared-image"} & set(json.loads(run_cli("info", root, "--json")[1])["spaces"])
    code, out, err = run_cli("recommend", root, "--user", SHOPPER, "--json")
    assert code == 0 and json.loads(out)["personalised"] is True, err
    assert ids[0] in product_vectors(behaviour_of(root))  # back in the catalog: its logged events count again


def test_changed_encoders_leave_the_fused_space_out_with_a_note_and_retrain_makes_it(tiny_bert_dir, tmp_path):
    root, ids, catalog = _versioned_root(tiny_bert_dir, tmp_path)
    write_csv(tmp_path / "events.csv", events_for(ids))
    add(root, tmp_path / "events.csv")
    assert run_cli("train", root, "--epochs", "2", "--dim", "8", "-q")[0] == 0
    code, out, err = run_cli("reindex", catalog, "--out", root, "--image-model", "none", "--json", "-q")  # packaged MiniLM
    assert code == 0, err
    report = json.loads(out)
    assert any("--retrain" in note for note in report["notes"]), report["notes"]
    assert "fused" not in json.loads(run_cli("info", root, "--json")[1])["spaces"]
    assert json.loads(run_cli("recommend", root, "--user", SHOPPER, "--json")[1])["personalised"] is True
    code, out, err = run_cli("reindex", catalog, "--out", root, "--image-model", "none", "--json", "-q", "--retrain")
    assert code == 0, err
    assert "fused" in json.loads(run_cli("info", root, "--json")[1])["spaces"]
    assert json.loads(run_cli("search", root, "shirt", "--space", "fused", "--json")[1])["results"]


# item 6: the server's feedback loop runs in memory


def _client(index: Path, tiny_bert_dir, **shoppers):
    from fastapi.testclient import TestClient

    from vitrina.engine.config import ShopperConfig, VitrinaConfig
    from vitrina.serving.app import create_app
    from vitrina.serving.config import ServingConfig
    from tests.serving_util import KEY

    config = VitrinaConfig(text_model=str(tiny_bert_dir), image_model=None, progress=False,
                           shoppers=ShopperConfig(**shoppers))
    client = TestClient(create_app(index, config, ServingConfig(api_key=KEY)))
    client.__enter__()
    for _ in range(600):
        if client.get("/readyz").status_code == 200:
            return client
        time.sleep(0.1)
    raise AssertionError(client.get("/readyz").text)


def test_post_events_updates_memory_logs_durably_and_snapshots_later_without_a_reload(tiny_bert_dir, tmp_path):
    from tests.serving_util import KEY

    index, ids = plain_index(tiny_bert_dir, tmp_path)
    client = _client(index, tiny_bert_dir, snapshot_every_s=3600)
    try:
        version = client.get("/readyz").json()["index_version"]
        events = events_for(ids)
        for i, e in enumerate(events):
            r = client.post("/events", json={"events": [e]}, headers={"X-API-Key": KEY})
            assert r.status_code == 200 and r.json()["duplicates"] == 0 and r.json()["index_version"] == version, r.text
            logged = (index / EVENTS_DIR / LOG_FILE).read_text().count("\n") - 1
            assert logged == i + 1  # on disk (fsync'd) before the answer
        assert not (index / BEHAVIOUR_DIR).exists()  # no file rewritten per request: snapshots come later
        assert client.get("/readyz").json()["index_version"] == version  # and no reload
        assert client.get(f"/users/{SHOPPER}/recommendations", headers=KEYED).json()["personalised"] is True
        again = client.post("/events", json={"events": events[:5]}, headers={"X-API-Key": KEY}).json()
        assert again["accepted"] == 5 and again["duplicates"] == 5
    finally:
        client.__exit__(None, None, None)
    model = behaviour_of(index)  # the snapshot written at shutdown, covering the whole log
    assert model.keyed and model.log_offset == (index / EVENTS_DIR / LOG_FILE).stat().st_size
    assert len(model.users) == len({e["user_id"] for e in events})


def test_a_server_picks_up_events_and_forgets_made_by_the_cli_while_it_runs(tiny_bert_dir, tmp_path):
    index, ids = plain_index(tiny_bert_dir, tmp_path)
    write_csv(tmp_path / "events.csv", events_for(ids))
    client = _client(index, tiny_bert_dir, snapshot_every_s=0.5)
    try:
        assert client.get(f"/users/{SHOPPER}/recommendations", headers=KEYED).status_code == 404  # no events yet
        add(index, tmp_path / "events.csv")  # another process (a second worker, the CLI) logs events

        def answer() -> dict:
            r = client.get(f"/users/{SHOPPER}/recommendations", headers=KEYED)
            return r.json() if r.status_code == 200 else {}

        deadline = time.monotonic() + 20
        while answer().get("personalised") is not True and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answer()["personalised"] is True
        assert run_cli("events", "forget", index, "--user", SHOPPER)[0] == 0
        deadline = time.monotonic() + 20
        while answer().get("personalised") is not False and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answer()["personalised"] is False
        time.sleep(1.5)  # a snapshot round after the forget must not write the shopper back
    finally:
        client.__exit__(None, None, None)
    assert files_containing(index, SHOPPER) == []
    key = Pseudonyms(bytes.fromhex((index / EVENTS_DIR / KEY_FILE).read_text().strip()))
    assert files_containing(index, key.user(SHOPPER)) == []


def test_access_logs_never_print_shopper_ids(tiny_bert_dir, tmp_path, caplog, monkeypatch):
    import logging
    import threading

    import httpx
    import uvicorn

    from vitrina.engine.config import VitrinaConfig
    from vitrina.serving.app import create_app
    from vitrina.serving.config import ServingConfig
    from tests.serving_util import KEY, free_port, wait_ready

    index, ids = plain_index(tiny_bert_dir, tmp_path)
    app = create_app(index, VitrinaConfig(text_model=str(tiny_bert_dir), image_model=None, progress=False),
                     ServingConfig(api_key=KEY))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None, access_log=True))
    thread = threading.Thread(target=server.run, daemon=True)
    monkeypatch.setattr(logging.getLogger("uvicorn.access"), "propagate", True)  # another server may have set False
    with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="uvicorn.access"):
        thread.start()
        base = f"http://127.0.0.1:{server.config.port}"
        try:
            wait_ready(base)
            httpx.post(f"{base}/events", json={"events": events_for(ids)}, headers={"X-API-Key": KEY})
            httpx.get(f"{base}/users/{SHOPPER}/recommendations")
            httpx.get(f"{base}/search", params={"q": "shirt", "user": SHOPPER})
            httpx.delete(f"{base}/users/{SHOPPER}", headers={"X-API-Key": KEY})
        finally:
            server.should_exit = True
            thread.join(30)
    access = "\n".join(r.getMessage() for r in caplog.records if r.name == "uvicorn.access")  # the server's log only
    assert "/users/-/recommendations" in access and "user=-" in access
    assert "DELETE /users/-" in access and "Zq81x" not in access


def test_events_posted_while_a_trained_plain_index_refreshes_its_fused_vectors_are_all_kept(tiny_bert_dir, tmp_path,
                                                                                          monkeypatch):
    """Snapshots refresh the fused vectors by swapping the index directory, which holds the event log:
    no acknowledged event may fall into the swap (the log's lock is held from the copy to the swap).
    The swap is slowed down here, so that events arrive while the directory is away."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    import vitrina.index.store as store
    from tests.serving_util import KEY

    def slow_swap(tmp: Path, out: Path) -> None:
        old = out.parent / f".{out.name}.old-slow"
        os.replace(out, old)
        time.sleep(0.2)
        os.replace(tmp, out)
        import shutil

        shutil.rmtree(old, ignore_errors=True)


    index, ids = plain_index(tiny_bert_dir, tmp_path)
    write_csv(tmp_path / "events.csv", events_for(ids))
    seeded = add(index, tmp_path / "events.csv")["events"]
    assert run_cli("train", index, "--epochs", "1", "--dim", "8", "-q")[0] == 0
    monkeypatch.setattr(store, "replace_directory", slow_swap)  # the swaps of index.store.editing
    client = _client(index, tiny_bert_dir, snapshot_every_s=0.05, snapshot_every_events=1)
    rng = np.random.default_rng(1)
    try:
        first = client.get("/readyz").json()["index_version"]
        served = client.app.state.holder.current

        def post(i: int) -> int:
            e = {"user_id": f"later{i % 17}", "product_id": ids[int(rng.integers(len(ids)))], "event": "view",
                 "timestamp": 1_700_000_000 + i}
            return client.post("/events", json={"events": [e]}, headers={"X-API-Key": KEY}).status_code

        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(post, range(300)))
        assert statuses == [200] * 300
        deadline = time.monotonic() + 30
        while client.get("/readyz").json()["index_version"] == first and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get("/readyz").json()["index_version"] != first  # fused vectors refreshed ...
        assert client.app.state.holder.current is served  # ... in place: no reload of the whole index
        assert client.get("/search", params={"q": "shirt", "space": "fused"}).json()["results"]
    finally:
        client.__exit__(None, None, None)
    assert (index / EVENTS_DIR / LOG_FILE).read_text().count("\n") - 1 == seeded + 300
    assert not [p.name for p in tmp_path.iterdir() if ".old-" in p.name or ".edit-" in p.name]
    assert behaviour_of(index).interactions.sum() > 0


def test_a_full_disk_answers_503_applies_nothing_and_a_retry_is_counted_once(tiny_bert_dir, tmp_path, monkeypatch):
    import errno

    import vitrina.engine.learn.event_store as event_store
    from tests.serving_util import KEY

    index, ids = plain_index(tiny_bert_dir, tmp_path)
    write_csv(tmp_path / "events.csv", events_for(ids))
    add(index, tmp_path / "events.csv")
    client = _client(index, tiny_bert_dir, snapshot_every_s=3600)
    try:
        before = client.get("/users/newcomer/recommendations", headers=KEYED).json()["personalised"]
        body = {"events": [{"user_id": "newcomer", "product_id": ids[2], "event": "cart", "timestamp": "2024-05-01"}]}

        def full(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(event_store.os, "fsync", full)
        refused = client.post("/events", json=body, headers={"X-API-Key": KEY})
        assert refused.status_code == 503 and "No space left on device" in refused.json()["detail"]
        assert client.get("/users/newcomer/recommendations", headers=KEYED).json()["personalised"] is before is False
        monkeypatch.undo()
        retried = client.post("/events", json=body, headers={"X-API-Key": KEY}).json()
        assert retried["accepted"] == 1 and retried["duplicates"] == 0  # the refused event was not kept
        assert client.get("/users/newcomer/recommendations", headers=KEYED).json()["personalised"] is True
    finally:
        client.__exit__(None, None, None)
    newcomer = [line for line in (index / EVENTS_DIR / LOG_FILE).read_text().splitlines() if f'"product":"{ids[2]}"' in line
                and '"weight":4.0' in line and "1714521600" in line]
    assert len(newcomer) == 1  # counted once
    code, _, err = run_cli("events", "forget", tmp_path / "nowhere", "--user", "x")
    assert code == 1 and err.startswith("vitrina: error:")


def test_two_workers_share_the_log_and_follow_each_others_events_and_forgets(tiny_bert_dir, tmp_path):
    import signal
    import subprocess
    import sys

    import httpx

    from tests.serving_util import KEY, free_port, wait_ready

    index, ids = plain_index(tiny_bert_dir, tmp_path)
    port = free_port()
    env = {**os.environ, "VITRINA_API_KEY": KEY, "VITRINA_USER_KEY": "two-workers-user-key-0123"}
    process = subprocess.Popen([str(Path(sys.executable).parent / "vitrina"), "serve", str(index), "--port", str(port),
                                "--workers", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    close = {"Connection": "close"}  # a new connection per request: the kernel spreads them over the workers
    events = events_for(ids)
    try:
        wait_ready(base, timeout_s=180)
        for _ in range(20):
            wait_ready(base)
        for e in events:
            r = httpx.post(f"{base}/events", json={"events": [e]}, headers={"X-API-Key": KEY, **close})
            assert r.status_code == 200, r.text

        def all_answer(personalised: bool) -> bool:
            deadline, streak = time.monotonic() + 30, 0
            while streak < 20 and time.monotonic() < deadline:
                r = httpx.get(f"{base}/users/{SHOPPER}/recommendations", headers={**close, **KEYED})
                streak = streak + 1 if r.status_code == 200 and r.json()["personalised"] is personalised else 0
            return streak == 20

        assert all_answer(True)  # each worker applied the events the other one logged
        gone = httpx.delete(f"{base}/users/{SHOPPER}", headers={"X-API-Key": KEY, **close})
        assert gone.status_code == 200 and gone.json()["events_removed"] == 3
        assert all_answer(False)  # and the other worker reloaded after the log was rewritten
        time.sleep(1.5)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    assert (index / EVENTS_DIR / LOG_FILE).read_text().count("\n") - 1 == len(events) - 3
    assert files_containing(index, SHOPPER) == []
    assert files_containing(index, Pseudonyms(b"two-workers-user-key-0123").user(SHOPPER)) == []


def test_a_server_applies_retention_at_snapshot_time(tiny_bert_dir, tmp_path):
    from tests.serving_util import KEY

    index, ids = plain_index(tiny_bert_dir, tmp_path)
    client = _client(index, tiny_bert_dir, max_age_days=30, snapshot_every_s=0.2)
    now = time.time()
    try:
        old = [{"user_id": "old-timer", "product_id": ids[1], "event": "purchase", "timestamp": now - 86_400 * 45}]
        new = [{"user_id": "regular", "product_id": ids[2], "event": "purchase", "timestamp": now - 3_600}]
        assert client.post("/events", json={"events": old + new}, headers={"X-API-Key": KEY}).status_code == 200
        deadline = time.monotonic() + 20
        while client.get("/users/old-timer/recommendations", headers=KEYED).json()["personalised"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get("/users/old-timer/recommendations", headers=KEYED).json()["personalised"] is False
        assert client.get("/users/regular/recommendations", headers=KEYED).json()["personalised"] is True
    finally:
        client.__exit__(None, None, None)
    assert (index / EVENTS_DIR / LOG_FILE).read_text().count("\n") - 1 == 1
    assert len(behaviour_of(index).users) == 1
