"""Supervisor scenarios run in a fresh interpreter (`python -m tests.supervise_scenarios NAME`), printing one JSON
line: forking from the test process itself, after other tests left thread pools and at-fork handlers (Ray's gRPC,
OpenMP) in it, is not what a server does and crashed the test process once."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sys
import threading
import time

import psutil

from vitrina.serving.config import Supervision
from vitrina.serving.prefork import Supervisor, WorkerError, describe_exit

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


def exits() -> dict:
    crashed = crasher()
    first = describe_exit(os.waitpid(crashed, 0)[1])
    slept = sleeper()
    os.kill(slept, signal.SIGKILL)
    return {"crashed": first, "killed": describe_exit(os.waitpid(slept, 0)[1])}


def replaced() -> dict:
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
    supervisor.run()  # returns on SIGTERM, after every worker ended
    thread.join()
    lingering = [pid for pid in sum(seen, []) if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    return {"first": seen[0], "later": seen[1], "alive": supervisor.alive(), "lingering": lingering}


def keep_dying() -> dict:
    supervisor = Supervisor(crasher, 2, FAST)
    started = time.monotonic()
    try:
        supervisor.run()
        error = ""
    except WorkerError as exc:
        error = str(exc)
    return {"error": error, "seconds": time.monotonic() - started, "alive": supervisor.alive()}


def main(name: str) -> None:
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logging.getLogger("vitrina").addHandler(handler)
    logging.getLogger("vitrina").setLevel(logging.WARNING)
    result = {"exits": exits, "replaced": replaced, "keep_dying": keep_dying}[name]()
    print(json.dumps({**result, "log": log.getvalue()}))


if __name__ == "__main__":
    main(sys.argv[1])
