"""`vitrina serve`: run the app under uvicorn, in one process or several workers sharing metrics and reloads."""

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import uvicorn

from vitrina.engine.config import VitrinaConfig
from vitrina.engine.errors import QueryError
from vitrina.serving.access_log import log_config
from vitrina.serving.app import SETTINGS_ENV, create_app, settings_for_workers
from vitrina.serving.config import ServingConfig
from vitrina.serving.metrics import use_multiprocess_values
from vitrina.serving.prefork import per_worker_threads, serve_forked
from vitrina.serving.ratelimit import RateLimiter
from vitrina.serving.timeouts import uvicorn_timeouts

WORKER_APP = "vitrina.serving.app:app_from_environment"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own switch, read in each worker


def run_server(index_path: Path, config: VitrinaConfig, serving: ServingConfig, *, host: str, port: int,
               workers: int = 1, access_log: bool = False, verbose: bool = False, banner: str | None = None) -> None:
    """Serve `index_path` until stopped: the app in this process, or `workers` processes forked after the index
    (and, with one encoder thread each, the encoders) loaded here, sharing it and one listening socket.

    banner: a line for stderr once the settings are checked, just before the server starts.
    """
    if workers < 1:
        raise QueryError(f"workers must be at least 1, got {workers}")
    check_rate_limit_storage(serving)
    if banner is not None:
        print(banner, file=sys.stderr)
    options = server_options(serving, access_log, verbose)
    if workers == 1:
        uvicorn.run(create_app(index_path, config, serving), host=host, port=port, **options)
        return
    if not hasattr(os, "fork"):  # no fork (Windows): each uvicorn worker process loads the index itself
        with worker_settings(Path(index_path), config, serving):
            uvicorn.run(WORKER_APP, factory=True, host=host, port=port, workers=workers, **options)
        return
    config = per_worker_threads(config, workers)
    with worker_settings(Path(index_path), config, serving) as shared:
        use_multiprocess_values()
        app = create_app(index_path, config, shared)
        app.state.holder.preload(warm=config.encoders.threads == 1)  # ONNX thread pools would not survive a fork
        serve_forked(app, host, port, workers, options, serving.supervision)


def check_rate_limit_storage(serving: ServingConfig) -> None:
    """A clear error now for a rate-limit storage that cannot be used, not later in a worker."""
    RateLimiter(serving.rate_limit, serving.key_rate_limit, serving.wrong_key_limit, None, serving.rate_limit_storage)


def server_options(serving: ServingConfig, access_log: bool = False, verbose: bool = False) -> dict[str, Any]:
    """uvicorn's options: the redacting log configuration (levels set there) and the connection timeouts."""
    return {"log_level": None, "access_log": access_log,
            "log_config": log_config("INFO" if verbose else "WARNING"),  # access log without shoppers' ids
            **uvicorn_timeouts(serving.header_timeout_s, serving.keep_alive_timeout_s)}


@contextlib.contextmanager
def worker_settings(index_path: Path, config: VitrinaConfig, serving: ServingConfig) -> Iterator[ServingConfig]:
    """While workers run: a temporary folder for their shared metrics and reload signal, and the settings each
    worker's `app_from_environment` reads, in the environment; yields the workers' ServingConfig."""
    run_dir = Path(tempfile.mkdtemp(prefix="vitrina-serve-"))
    (run_dir / "metrics").mkdir()
    serving = dataclasses.replace(serving, metrics_dir=str(run_dir / "metrics"), reload_signal=str(run_dir / "reload.json"))
    saved = {name: os.environ.get(name) for name in (MULTIPROC_ENV, SETTINGS_ENV)}
    os.environ[MULTIPROC_ENV] = serving.metrics_dir
    os.environ[SETTINGS_ENV] = settings_for_workers(index_path, config, serving)
    try:
        yield serving
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(run_dir, ignore_errors=True)  # the workers' metrics files and the reload signal
