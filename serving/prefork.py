"""`vitrina serve --workers N`: load the index and its encoders once, then fork N workers that share them.

The parent loads (and warms) the index before forking, so the workers share its memory copy-on-write: the
memory-mapped vectors, the product table, the BM25 index and, where each worker runs its encoders on one
thread, the ONNX model weights. All workers accept on one listening socket bound by the parent. The parent
only waits: SIGINT/SIGTERM are passed on to the workers, and it exits when they have.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
from typing import Any

import uvicorn
from fastapi import FastAPI

from vitrina.encoders.onnx_runtime import usable_cores
from vitrina.engine.config import VitrinaConfig

log = logging.getLogger("vitrina")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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


def serve_forked(app: FastAPI, host: str, port: int, workers: int, options: dict[str, Any]) -> None:
    """Fork `workers` processes serving `app` (already loaded) on one socket; return when all have exited."""
    sock = listening_socket(host, port)
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker: serve until SIGINT/SIGTERM (uvicorn's own handlers), then leave
            code = 0
            try:
                for sig in STOP_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options)).run(sockets=[sock])
            except BaseException:  # noqa: BLE001 - a worker never returns into the parent's code
                log.exception("worker %s stopped on an error", os.getpid())
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    sock.close()

    def stop(signum: int, _frame: object) -> None:
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        for child in children:
            while True:
                try:
                    os.waitpid(child, 0)
                    break
                except ChildProcessError:
                    break
                except InterruptedError:
                    continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
