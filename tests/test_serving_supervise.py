"""serving/prefork.py's supervisor: forked workers that die are replaced (real processes, real signals), a worker
that keeps dying at start stops the server with a clear error, and a stop signal ends every worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest

from vitrina.engine.build.indexing import build_index
from vitrina.engine.config import VitrinaConfig
from vitrina.serving.config import Supervision
from vitrina.serving.prefork import Supervisor, WorkerError, describe_exit
from tests.serving_util import free_port, search_until_answered, shop_catalog, wait_ready
from tests.test_serving_server import REPO

FAST = Supervision(restart_delay_s=0.05, max_restart_delay_s=0.2, start_window_s=5.0, max_start_failures=3, stop_timeout_s=5.0)


def sleeper() -> int:
    """A worker that runs until a signal ends it."""
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGINT, signal.SIGTERM))
        time.sleep(60)
        os._exit(0)
    return pid


def crasher() -> int:
    """A worker that dies as it starts."""
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    return pid


def test_exit_statuses_are_described():
    pid = crasher()
    assert describe_exit(os.waitpid(pid, 0)[1]) == "exited with code 3"
    pid = sleeper()
    os.kill(pid, signal.SIGKILL)
    assert describe_exit(os.waitpid(pid, 0)[1]) == "was killed by signal 9 (SIGKILL)"


def test_a_killed_worker_is_replaced_and_a_stop_signal_ends_them_all(caplog):
    supervisor = Supervisor(sleeper, 2, FAST)
    seen: list[list[int]] = []

    def drive() -> None:
        time.sleep(0.5)
        first = supervisor.alive()
        seen.append(first)
        os.kill(first[0], signal.SIGKILL)
        for _ in range(100):  # a new worker takes the dead one's place
            time.sleep(0.05)
            now = supervisor.alive()
            if len(now) == 2 and first[0] not in now:
                break
        seen.append(supervisor.alive())
        os.kill(os.getpid(), signal.SIGTERM)  # what `kill PARENT` does: stops the supervisor

    thread = threading.Thread(target=drive)
    thread.start()
    with caplog.at_level("WARNING", logger="vitrina"):
        supervisor.run()  # returns on SIGTERM, after every worker ended
    thread.join()
    first, later = seen
    assert len(first) == 2 and len(later) == 2 and first[1] in later and first[0] not in later
    assert supervisor.alive() == []
    for pid in first + later:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert f"worker {first[0]} was killed by signal 9 (SIGKILL)" in caplog.text and "starting a new worker" in caplog.text


def test_workers_that_keep_dying_at_start_stop_the_server_with_an_error(caplog):
    supervisor = Supervisor(crasher, 2, FAST)
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="vitrina"), pytest.raises(WorkerError, match="died as they started 3 times in a row"):
        supervisor.run()
    assert time.monotonic() - started < 5  # backed off 0.05 s, then 0.1 s: not minutes
    assert supervisor.alive() == []
    assert "in 0.1 s (died at start 2 time(s) in a row)" in caplog.text


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
