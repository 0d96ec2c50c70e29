"""serving/prefork.py's supervisor: forked workers that die are replaced (real processes, real signals), a worker
that keeps dying at start stops the server with a clear error, and a stop signal ends every worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from vitrina.engine.build.indexing import build_index
from vitrina.engine.config import VitrinaConfig
from tests.serving_util import free_port, search_until_answered, shop_catalog, wait_ready
from tests.test_serving_server import REPO


def scenario(name: str) -> dict:
    """Run a scenario of tests/supervise_scenarios.py in a fresh interpreter (see why there); its JSON result."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "tests.supervise_scenarios", name], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_exit_statuses_are_described():
    assert scenario("exits") == {"crashed": "exited with code 3", "killed": "was killed by signal 9 (SIGKILL)", "log": ""}


def test_a_killed_worker_is_replaced_and_a_stop_signal_ends_them_all():
    result = scenario("replaced")
    first, later = result["first"], result["later"]
    assert len(first) == 2 and len(later) == 2 and first[1] in later and first[0] not in later
    assert result["alive"] == [] and result["lingering"] == []
    assert f"worker {first[0]} was killed by signal 9 (SIGKILL)" in result["log"] and "starting a new worker" in result["log"]


def test_workers_that_keep_dying_at_start_stop_the_server_with_an_error():
    result = scenario("keep_dying")
    assert "died as they started 3 times in a row" in result["error"]
    assert result["seconds"] < 5  # backed off 0.05 s, then 0.1 s: not minutes
    assert result["alive"] == []
    assert "in 0.1 s (died at start 2 time(s) in a row)" in result["log"]


def serve_two_workers(tmp_path, *flags: str) -> tuple[subprocess.Popen, int]:
    """`vitrina serve --workers 2` of a small shop index, in a process of its own: (the process, its port)."""
    catalog, _ = shop_catalog(tmp_path, per_type=2)
    build_index(catalog, tmp_path / "idx", VitrinaConfig(progress=False))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen([sys.executable, "-m", "vitrina", "serve", str(tmp_path / "idx"), "--port", str(port),
                               "--workers", "2", *flags], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return server, port


@pytest.mark.slow
def test_vitrina_serve_with_two_workers_replaces_a_killed_one_and_keeps_answering(tmp_path):
    server, port = serve_two_workers(tmp_path, "--rate-limit", "off")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, timeout_s=240)
        parent = psutil.Process(server.pid)
        workers = parent.children()
        assert len(workers) == 2
        workers[0].kill()  # SIGKILL: as the kernel's OOM killer does
        search_until_answered(base, 20, timeout_s=120)  # the replacement may be warming (503) for a moment
        for _ in range(200):
            now = parent.children()
            if len(now) == 2 and workers[0].pid not in {w.pid for w in now}:
                break
            time.sleep(0.1)
        assert len(now) == 2 and workers[1].pid in {w.pid for w in now} and workers[0].pid not in {w.pid for w in now}
        replacement = next(w for w in now if w.pid != workers[1].pid)
        assert replacement.cmdline() == parent.cmdline()  # forked from the parent, not spawned
        assert any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in replacement.net_connections("tcp"))
        assert httpx.get(f"{base}/readyz", timeout=30).status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=90)[0].decode(errors="replace")
    assert server.returncode == 0, output[-3000:]
    assert f"worker {workers[0].pid} was killed by signal 9 (SIGKILL)" in output and "Traceback" not in output
    assert not any(psutil.pid_exists(w.pid) and psutil.Process(w.pid).status() != psutil.STATUS_ZOMBIE for w in now)


@pytest.mark.slow
def test_vitrina_serve_stops_with_a_clear_error_when_workers_keep_dying_at_start(tmp_path):
    server, port = serve_two_workers(tmp_path)
    parent = psutil.Process(server.pid)
    deadline = time.monotonic() + 240
    while server.poll() is None and time.monotonic() < deadline:  # every worker dies as soon as it appears
        for child in parent.children():
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.02)
    output = server.communicate(timeout=60)[0].decode(errors="replace")
    assert server.returncode == 1, output[-3000:]
    assert "vitrina: error: worker" in output and "died as they started 5 times in a row" in output, output[-3000:]
    assert "Traceback" not in output
