"""`vitrina serve --workers N`: load the index and its encoders once, then fork N workers that share them.

The parent loads (and warms) the index before forking, so the workers share its memory copy-on-write: the
memory-mapped vectors, the product table, the BM25 index and, where each worker runs its encoders on one
thread, the ONNX model weights. All workers accept on one listening socket bound by the parent. The parent
supervises: a worker that dies is replaced by a new fork (of the index as the parent loaded it; the new worker
then loads the version the others announced), with a back-off when workers die as they start, and the server
stops with an error when they keep doing so. SIGINT/SIGTERM are passed on to the workers; it exits when they have.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import time
from typing import Any, Callable

import uvicorn
from fastapi import FastAPI

from vitrina.encoders.onnx_runtime import usable_cores
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.errors import QueryError
from vitrina.serving.config import Supervision

log = logging.getLogger("vitrina")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
POLL_S = 0.1  # how often the parent looks for dead workers


def per_worker_threads(config: VitrinaConfig, workers: int) -> VitrinaConfig:
    """The config with the encoder threads each worker gets: --threads where given, else the usable cores
    shared out among the workers (at least one)."""
    threads = config.encoders.threads or max(1, usable_cores() // workers)
    return dataclasses.replace(config, encoders=dataclasses.replace(config.encoders, threads=threads))


def listening_socket(host: str, port: int) -> socket.socket:
    """The one socket every worker accepts on (bound here, before forking)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class WorkerError(QueryError):
    """The workers keep dying as they start: the server stopped rather than restart them forever."""


@dataclasses.dataclass
class Slot:
    """One worker place: the process in it now, when it was forked, how often in a row it died at start."""

    pid: int | None = None
    started: float = 0.0
    failures: int = 0
    due: float | None = None  # when to fork its next worker (after a death)


def describe_exit(status: int) -> str:
    """'exited with code 3' / 'was killed by signal 9 (SIGKILL)' from a waitpid status."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "unknown"
    return f"was killed by signal {-code} ({name})"


class Supervisor:
    """Keeps `workers` forked processes running: a worker that dies is replaced (at once if it had been serving,
    after a doubling back-off if it died at start; after `max_start_failures` deaths at start in a row every worker
    is stopped and WorkerError raised). SIGINT/SIGTERM stop every worker (killed after `stop_timeout_s`)."""

    def __init__(self, start: Callable[[], int], workers: int, settings: Supervision) -> None:
        self._start = start
        self.settings = settings
        self.slots = [Slot() for _ in range(workers)]
        self.stopping = False
        self.failed: str | None = None

    def run(self) -> None:
        """Start the workers and supervise them until a stop signal (or WorkerError when they keep dying)."""
        previous = {sig: signal.signal(sig, self._stop) for sig in STOP_SIGNALS}
        try:
            for slot in self.slots:
                self._fork(slot)
            while not self.stopping:
                self._reap()
                self._restart_due()
                time.sleep(POLL_S)
            self._stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.failed:
            raise WorkerError(self.failed)

    def alive(self) -> list[int]:
        return [slot.pid for slot in self.slots if slot.pid is not None]

    def _stop(self, signum: int, _frame: object) -> None:
        self.stopping = True
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, sig: int) -> None:
        for pid in self.alive():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _fork(self, slot: Slot) -> None:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # no stop signal between fork and SIG_DFL
        try:
            slot.pid, slot.started, slot.due = self._start(), time.monotonic(), None
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _reap(self) -> None:
        """Collect the workers that died; plan their replacement (or give up)."""
        for slot in self.slots:
            if slot.pid is None:
                continue
            try:
                pid, status = os.waitpid(slot.pid, os.WNOHANG)  # its own workers only: never another child's status
            except ChildProcessError:
                pid, status = slot.pid, 0
            if pid == 0:
                continue
            slot.pid = None
            if self.stopping:
                continue
            lived = time.monotonic() - slot.started
            at_start = lived < self.settings.start_window_s
            slot.failures = slot.failures + 1 if at_start else 0
            how = f"worker {pid} {describe_exit(status)} after {lived:.1f} s"
            if slot.failures >= self.settings.max_start_failures:
                self.failed = (f"{how}: workers died as they started {slot.failures} times in a row; stopped the "
                               "server (see the log above for why they die: memory, the index, a port?)")
                log.error("%s", self.failed)
                self.stopping = True
                self._signal_all(signal.SIGTERM)
                return
            delay = 0.0 if not at_start else min(self.settings.max_restart_delay_s,
                                                  self.settings.restart_delay_s * 2 ** (slot.failures - 1))
            log.warning("%s; starting a new worker%s", how, f" in {delay:.1f} s (died at start {slot.failures} "
                        f"time(s) in a row)" if delay else "")
            slot.due = time.monotonic() + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.pid is None and slot.due is not None and slot.due <= now:
                self._fork(slot)
                log.warning("worker %s started", slot.pid)

    def _stop_all(self) -> None:
        """SIGTERM every worker (again), wait for them, SIGKILL those still there after stop_timeout_s."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.stop_timeout_s
        while self.alive():
            self._reap()
            if time.monotonic() > deadline:
                log.warning("workers %s did not stop within %.0f s; killing them", self.alive(), self.settings.stop_timeout_s)
                self._signal_all(signal.SIGKILL)
                deadline = float("inf")
            time.sleep(POLL_S)


def fork_worker(app: FastAPI, host: str, port: int, sock: socket.socket, options: dict[str, Any]) -> int:
    """Fork one worker serving `app` on `sock`; its pid (the child never returns)."""
    pid = os.fork()
    if pid:
        return pid
    code = 0  # a worker: serve until SIGINT/SIGTERM (uvicorn's own handlers), then leave
    try:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options)).run(sockets=[sock])
    except BaseException:  # noqa: BLE001 - a worker never returns into the parent's code
        log.exception("worker %s stopped on an error", os.getpid())
        code = 1
    finally:
        os._exit(code)


def serve_forked(app: FastAPI, host: str, port: int, workers: int, options: dict[str, Any],
                 supervision: Supervision | None = None) -> None:
    """Fork `workers` processes serving `app` (already loaded) on one socket and keep them running (a dead one is
    replaced); return once stopped by SIGINT/SIGTERM, raise WorkerError when they keep dying at start."""
    sock = listening_socket(host, port)  # kept open here: a replacement worker inherits it too
    try:
        Supervisor(lambda: fork_worker(app, host, port, sock, options), workers, supervision or Supervision()).run()
    finally:
        sock.close()
