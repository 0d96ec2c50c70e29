"""Issue 18: a colour descriptor per fashion image (HSV histogram of the non-background pixels), cached.

`vitrina.engine.learn.colour.colour_descriptor` (HSV histogram of the non-white pixels, Hellinger).
The first measurement (colour.npy) binned hue from 0, splitting reds across the wrap; the engine
centres the first bin on red. Written to out/shared-ideas/colour-v1.npy
in product order of the catalog (the index keeps catalog order).

    (cd benchmarks && ../.venv/bin/python colour_features.py)
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from shared_space_ideas import CACHE
from vitrina.engine.learn.colour import colour_descriptor

FASHION = Path("/work/shared/data/fashion")


def main() -> None:
    table = pd.read_csv(FASHION / "products.csv", dtype=str)
    started = time.perf_counter()
    out = np.stack([colour_descriptor(Image.open(FASHION / p)) for p in table["image"]])
    np.save(CACHE / "colour-v1.npy", out.astype(np.float32))
    print(f"{len(out)} descriptors in {time.perf_counter() - started:.1f} s -> {CACHE / 'colour-v1.npy'}")


if __name__ == "__main__":
    main()
