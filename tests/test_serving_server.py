"""serving/server.py: `run_server`'s worker setup (settings in the environment, a shared metrics folder,
cleaned up after), and two real uvicorn workers serving one index."""

from __future__ import annotations

import base64
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient

from vitrina.engine.build.indexing import build_index
from vitrina.engine.config import VitrinaConfig
from vitrina.serving.app import SETTINGS_ENV, create_app
from vitrina.serving.config import ServingConfig
from vitrina.serving.prefork import per_worker_threads
from vitrina.serving.ratelimit import RateLimitError
from vitrina.serving.server import MULTIPROC_ENV, run_server, server_options, worker_settings
from tests.serving_util import KEY, free_port, search_until_answered, shop_catalog, wait_ready

REPO = Path(__file__).resolve().parents[1]


def test_worker_settings_hand_each_worker_the_settings_and_clean_up(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    monkeypatch.setenv(SETTINGS_ENV, "before")
    config, serving = VitrinaConfig(progress=False), ServingConfig(api_key=KEY, max_k=7)
    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    with worker_settings(tmp_path / "idx", config, serving) as workers:
        path, got_config, got_serving = pickle.loads(base64.b64decode(os.environ[SETTINGS_ENV]))
        assert (path, got_config, got_serving) == (str(tmp_path / "idx"), config, workers)
        assert workers.max_k == 7 and workers.api_key == KEY
        assert os.environ[MULTIPROC_ENV] == workers.metrics_dir and Path(workers.metrics_dir).is_dir()
        assert Path(workers.reload_signal).parent == Path(workers.metrics_dir).parent
        run_dir = Path(workers.metrics_dir).parent
        assert run_dir.parent == tmp_path
    assert not run_dir.exists()
    assert os.environ[SETTINGS_ENV] == "before" and MULTIPROC_ENV not in os.environ


def test_server_options_and_early_errors():
    options = server_options(ServingConfig(header_timeout_s=3.0), access_log=True, verbose=True)
    assert options["access_log"] is True and options["log_level"] is None
    assert options["log_config"]["loggers"]["uvicorn.error"]["level"] == "INFO"
    assert options["timeout_keep_alive"] == 5.0
    with pytest.raises(RateLimitError, match="rate limit storage 'nowhere://x'"):
        run_server(Path("idx"), VitrinaConfig(), ServingConfig(rate_limit_storage="nowhere://x"), host="127.0.0.1", port=1)
    with pytest.raises(Exception, match="workers must be at least 1, got 0"):
        run_server(Path("idx"), VitrinaConfig(), ServingConfig(), host="127.0.0.1", port=1, workers=0)


@pytest.mark.slow
def test_two_workers_serve_the_index_and_leave_nothing_behind(tmp_path):
    catalog, _ = shop_catalog(tmp_path, per_type=2)
    build_index(catalog, tmp_path / "idx", VitrinaConfig(progress=False))
    port, scratch = free_port(), tmp_path / "tmp"
    scratch.mkdir()
    script = textwrap.dedent(f"""
        from pathlib import Path
        from vitrina.engine.config import VitrinaConfig
        from vitrina.serving.config import ServingConfig
        from vitrina.serving.server import run_server
        run_server(Path({str(tmp_path / 'idx')!r}), VitrinaConfig(progress=False), ServingConfig(api_key={KEY!r}),
                   host="127.0.0.1", port={port}, workers=2)
    """)
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, timeout_s=240)
        assert len(list(scratch.glob("vitrina-serve-*/metrics"))) == 1
        search_until_answered(base, 6, pause_s=0.5)  # whichever worker answers; one may still be loading (503)
        assert "vitrina_requests_total" in httpx.get(f"{base}/metrics", timeout=30).text
        # forked from the process that loaded the index (not spawned afresh), both accepting on the one port
        parent = psutil.Process(server.pid)
        workers = parent.children()
        assert len(workers) == 2 and all(w.cmdline() == parent.cmdline() for w in workers)
        for worker in workers:
            assert any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in worker.net_connections("tcp"))
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=60)[0].decode(errors="replace")
    assert server.returncode == 0, output[-3000:]
    assert list(scratch.glob("vitrina-serve-*")) == []  # the metrics folder and the reload signal are gone


def test_each_worker_gets_its_share_of_the_cores_unless_threads_are_given(monkeypatch):
    import vitrina.serving.prefork as prefork

    monkeypatch.setattr(prefork, "usable_cores", lambda: 8)
    assert per_worker_threads(VitrinaConfig(), 2).encoders.threads == 4
    assert per_worker_threads(VitrinaConfig(), 16).encoders.threads == 1
    given = VitrinaConfig()
    given = given.__class__(**{**given.__dict__, "encoders": given.encoders.__class__(**{**given.encoders.__dict__, "threads": 3})})
    assert per_worker_threads(given, 2).encoders.threads == 3


def test_an_index_loaded_before_forking_is_served_as_is(tmp_path):
    catalog, _ = shop_catalog(tmp_path, per_type=2)
    build_index(catalog, tmp_path / "idx", VitrinaConfig(progress=False))
    app = create_app(tmp_path / "idx", VitrinaConfig(progress=False), ServingConfig(api_key=KEY))
    holder = app.state.holder
    holder.preload(warm=False)  # as with several encoder threads per worker: warmed in the worker
    loaded = holder.current
    assert loaded is not None and not loaded.warmed
    with TestClient(app) as client:
        for _ in range(600):
            if client.get("/readyz").status_code == 200 and holder.current.warmed:
                break
            time.sleep(0.1)
        assert holder.current is loaded and loaded.warmed  # not loaded a second time
        assert client.get("/search", params={"q": "watch", "k": 3}).status_code == 200
        assert "vitrina_index_products" in client.get("/metrics").text
    broken = create_app(tmp_path / "nowhere", VitrinaConfig(progress=False), ServingConfig(api_key=KEY))
    broken.state.holder.preload(warm=True)
    assert broken.state.holder.current is None and "nowhere" in broken.state.holder.load_error
