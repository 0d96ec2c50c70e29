"""Issue 19's "second look at granian": serving_speed.py's phases against `vitrina serve` (uvicorn) and the same app
on granian's embedded ASGI server, interleaved. Needs `pip install granian` (not a Vitrina dependency).

Takes serving_speed.py's options; `--code uvicorn granian` names the two servers (phases end /c1 and /c2). The
granian server is one process with the settings of `vitrina serve INDEX --cache-size 0 --rate-limit off`.

    (cd benchmarks && ../.venv/bin/python granian_ab.py --out out/serve20 --code uvicorn granian --rounds 2 \\
        --only shop-100 sweep image-20 --seconds 20 --sweep 300 400 500 --sweep-seconds 10)
"""

from __future__ import annotations

import benchutil  # noqa: F401  (first: fixes sys.path)

import subprocess
import sys
from pathlib import Path

SERVE = "--serve-on-granian"


def serve_on_granian(index: str, port: int) -> None:
    """The server process: the app `vitrina serve` makes, on granian's embedded server (one worker)."""
    import asyncio

    from granian.constants import Interfaces
    from granian.server.embed import Server

    from vitrina.engine.config import VitrinaConfig
    from vitrina.serving.app import create_app
    from vitrina.serving.config import ServingConfig

    serving = ServingConfig.with_environment_key(cache_size=0, rate_limit="off")
    app = create_app(index, VitrinaConfig(progress=False), serving)
    asyncio.run(Server(app, address="127.0.0.1", port=port, interface=Interfaces.ASGI).serve())


def main() -> None:
    import serving_speed
    from benchutil import wait_ready

    uvicorn_server = serving_speed.serving

    def granian_server(index: Path, flags: list[str], code: str | None = None) -> subprocess.Popen:
        command = [sys.executable, __file__, SERVE, str(index), str(serving_speed.PORT)]
        return wait_ready(subprocess.Popen(command), serving_speed.PORT)

    def server(index: Path, flags: list[str], code: str | None = None) -> subprocess.Popen:
        if code and Path(code).name == "granian":
            return granian_server(index, flags)
        return uvicorn_server(index, flags, None)

    serving_speed.serving = server
    serving_speed.main()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == SERVE:
        serve_on_granian(sys.argv[2], int(sys.argv[3]))
    else:
        main()
