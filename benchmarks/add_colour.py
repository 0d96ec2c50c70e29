"""Issue 18: give a plain index built before colour descriptors its "colour" space, as indexing now stores it.

`vitrina index` and `vitrina reindex` store one colour descriptor per photo (encoders.colour, computed from
the decoded photo the CNN reads); `vitrina reindex` adds them to an older versioned root by itself, reusing
its image vectors. A plain `vitrina index` directory cannot be re-indexed in place, so this script adds the
space to a copy of one with the same library functions: image bytes read and decoded as the index stage
does (`read_image_bytes`, `decode_image`), `colour_descriptor`, the space built by `assemble.colour_space`.

    (cd benchmarks && PYTHONPATH=.. ../.venv/bin/python add_colour.py out/fashion-colour /work/shared/data/fashion/products.csv)
"""

from __future__ import annotations

import argparse
import copy
import csv
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from vitrina.encoders.colour import COLOUR_SPACE, colour_descriptor
from vitrina.encoders.image_io import decode_image, read_image_bytes
from vitrina.engine.build.assemble import colour_space
from vitrina.engine.config import VitrinaConfig
from vitrina.index import IndexDirectory
from vitrina.index.store import editing, write_manifest, write_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path)
    parser.add_argument("catalog", type=Path, help="the catalog the index was built from (its id and image columns)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    config = VitrinaConfig(progress=False)
    directory = IndexDirectory.load(args.index, config.index)
    record = directory.manifest.catalog
    with args.catalog.open(newline="") as f:
        images = {r[record["id_field"]]: r[record["image_field"]] for r in csv.DictReader(f)}
    rows = np.asarray(directory.spaces["image"].rows)
    sources = [str(args.catalog.parent / images[directory.products.ids[int(r)]]) for r in rows]
    enc, colour = config.encoders, config.encoders.colour

    def describe(source: str) -> np.ndarray:
        data = read_image_bytes(source, enc.image_timeout_s, config.images)
        return colour_descriptor(decode_image(data, source, enc.image_max_pixels, enc.image_max_aspect), colour)

    started = time.perf_counter()
    with ThreadPoolExecutor(args.threads) as pool:
        vectors = np.stack(list(pool.map(describe, sources)))
    info, space = colour_space(colour, vectors, rows, config)
    with editing(args.index) as tmp:
        manifest = copy.deepcopy(directory.manifest)
        write_space(tmp, COLOUR_SPACE, space)
        manifest.spaces[COLOUR_SPACE] = info
        write_manifest(tmp, manifest)
    print(f"{len(rows)} colour descriptors in {time.perf_counter() - started:.1f} s -> {args.index}")


if __name__ == "__main__":
    main()
