"""Issue 18: a colour descriptor per fashion image, cached for shared_space_ideas.py.

`vitrina.encoders.colour.colour_descriptor` (the engine's one descriptor: CIELAB soft histogram of the
non-background pixels, centre-weighted, Hellinger), written to out/shared-ideas/colour-lab.npy in
product order of the catalog (the index keeps catalog order). colour.npy and colour-v1.npy, measured
earlier, were an HSV histogram (hue bins from 0 / centred on red) from a module since removed (its
code is in git history: engine/learn/colour.py before the descriptors were merged).

    (cd benchmarks && ../.venv/bin/python colour_features.py)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from shared_space_ideas import CACHE
from vitrina.encoders.colour import colour_descriptor

FASHION = Path("/work/shared/data/fashion")


def grid_descriptor(image: Image.Image) -> np.ndarray:
    """The whole photo's descriptor and its four quadrants', joined (unit length)."""
    image = image.convert("RGB")
    w, h = image.size
    parts = [colour_descriptor(image)] + [colour_descriptor(image.crop((x, y, x + w // 2, y + h // 2)))
                                         for x in (0, w // 2) for y in (0, h // 2)]
    return np.concatenate(parts) / np.sqrt(len(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", action="store_true", help="also the 2x2 quadrants (colour-grid.npy)")
    args = parser.parse_args()
    table = pd.read_csv(FASHION / "products.csv", dtype=str)
    started = time.perf_counter()
    describe, name = (grid_descriptor, "colour-grid.npy") if args.grid else (colour_descriptor, "colour-lab.npy")
    out = np.stack([describe(Image.open(FASHION / p)) for p in table["image"]])
    np.save(CACHE / name, out.astype(np.float32))
    print(f"{len(out)} descriptors in {time.perf_counter() - started:.1f} s -> {CACHE / name}")


if __name__ == "__main__":
    main()
