"""What a behaviour snapshot pays for unchanged co-purchase counts: rewritten vs linked (issue 19).

    PYTHONPATH=.. ../.venv/bin/python co_purchase_snapshot.py DIR/behaviour   # a folder holding co_purchase.npz
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from vitrina.engine.learn.co_purchase import CO_PURCHASE_FILE, CoPurchases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a behaviour snapshot folder with co_purchase.npz")
    folder = parser.parse_args().folder
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        read, rewritten, linked = (Path(scratch) / name for name in ("read", "rewritten", "linked"))
        for path in (read, rewritten, linked):
            path.mkdir()
        shutil.copy(folder / CO_PURCHASE_FILE, read)
        counts = CoPurchases.load(read)
        start = time.perf_counter()
        counts.save(rewritten)
        rewrite_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        counts.save(linked, previous=rewritten)
        link_ms = (time.perf_counter() - start) * 1000
        size = (rewritten / CO_PURCHASE_FILE).stat().st_size / 2**20
        print(f"{counts.baskets.shape[0]} baskets x {counts.n_products} products, {size:.0f} MiB: "
              f"rewritten {rewrite_ms:.0f} ms (fsync'd), linked {link_ms:.2f} ms")


if __name__ == "__main__":
    main()
