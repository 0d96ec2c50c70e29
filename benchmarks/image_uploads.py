"""Issue 15, item 2: what a hostile photo upload costs. Each long-strip PNG (a few hundred bytes that
decode to a 1-pixel-high strip) goes to `POST /search/image` in a fresh process over an index of demo
products with the default models; the table gives the answer, the time and the growth of peak RSS.

    .venv/bin/python benchmarks/image_uploads.py [--reuse] [--sizes 1x20000 1x60000 1000x20000 640x480]

Run it with another checkout's code by PYTHONPATH=OTHER to compare (the figures before the fix in
RESULTS.md were measured that way on the commit before it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import benchutil  # noqa: F401  (first: fixes sys.path)
from benchutil import DEFAULT_OUT, REPO, ensure_index, markdown_table
from vitrina.engine.config import VitrinaConfig

ONE_UPLOAD = """
import io, json, resource, sys, time
from PIL import Image
from fastapi.testclient import TestClient
from vitrina.serving.app import create_app
from vitrina.serving.config import ServingConfig

w, h = map(int, sys.argv[2].split("x"))
buffer = io.BytesIO()
Image.new("RGB", (w, h), (10, 200, 10)).save(buffer, format="PNG")
data = buffer.getvalue()
off = {"rate_limit": "off"} if "rate_limit" in ServingConfig.__dataclass_fields__ else {}  # older code has none
with TestClient(create_app(sys.argv[1], serving=ServingConfig(api_key="k" * 16, **off))) as client:
    while client.get("/readyz").status_code != 200:
        time.sleep(0.1)
    warm = io.BytesIO()
    Image.new("RGB", (300, 200), (1, 2, 3)).save(warm, format="PNG")
    client.post("/search/image", files={"file": ("warm.png", warm.getvalue(), "image/png")})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    answer = client.post("/search/image", files={"file": ("strip.png", data, "image/png")})
    seconds = time.perf_counter() - started
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"bytes": len(data), "status": answer.status_code, "seconds": seconds, "peak_rss_mib": grown,
                  "detail": answer.json().get("detail", "") if answer.status_code != 200 else ""}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--reuse", action="store_true", help="reuse the index built by an earlier run")
    parser.add_argument("--sizes", nargs="+", default=["1x20000", "1x60000", "1000x20000", "640x480"], metavar="WxH")
    args = parser.parse_args()
    index = args.out / "image-uploads"
    catalog = REPO / "engine" / "demo_data" / "products.csv"
    ensure_index(catalog, index, VitrinaConfig(progress=False), args.reuse)
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO))}
    rows = []
    for size in args.sizes:
        # cwd: a folder of no code, so `python -c` imports the packages on PYTHONPATH (benchmarks/ holds an encoders.py)
        done = subprocess.run([sys.executable, "-c", ONE_UPLOAD, str(index.resolve()), size], env=env,
                              capture_output=True, text=True, timeout=600, cwd=index)
        if done.returncode != 0:
            rows.append([size, "-", "crashed", "-", "-", done.stderr.strip().splitlines()[-1][:80]])
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append([size, r["bytes"], r["status"], f"{r['seconds']:.2f}", f"+{r['peak_rss_mib']:.0f}", r["detail"][:80]])
    print(markdown_table(["upload (PNG)", "bytes", "HTTP", "seconds", "peak RSS MiB", "detail"], rows))


if __name__ == "__main__":
    main()
