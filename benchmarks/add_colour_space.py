"""Copy an index and add the "colour" space (one encoders.colour descriptor per product photo, default
ColourConfig, Flat), as indexing stores it on branch wt-colour; for measuring the attribute heads with and
without colour input before every index has the space.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/add_colour_space.py SOURCE OUT
"""

from __future__ import annotations

import copy
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vitrina.encoders.colour import COLOUR_SPACE, ColourConfig, colour_descriptor
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.query.search import SearchSession
from vitrina.index import ProductIndex, SpaceInfo, VectorSpace
from vitrina.index.store import editing, write_manifest, write_space


def main(source: Path, out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(source, out)
    session = SearchSession(out)
    rows = np.asarray(session.directory.spaces["image"].rows, dtype=np.int64)
    config = ColourConfig()
    started = time.perf_counter()
    vectors = np.stack([colour_descriptor(Image.open(session.image_source(session.products.ids[r])).convert("RGB"), config)
                        for r in rows]).astype(np.float32)
    print(f"{len(rows)} descriptors in {time.perf_counter() - started:.0f} s", flush=True)
    index = ProductIndex.build(vectors, rows, "Flat", VitrinaConfig().index)
    manifest = copy.deepcopy(session.manifest)
    manifest.spaces[COLOUR_SPACE] = SpaceInfo(encoder=config.name, model="", dim=vectors.shape[1], count=len(rows),
                                              factory=index.factory, runtime="colour descriptor (numpy)")
    with editing(out) as tmp:
        write_space(tmp, COLOUR_SPACE, VectorSpace(index, vectors, rows))
        write_manifest(tmp, manifest)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
