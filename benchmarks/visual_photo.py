"""An uploaded photo (no title) through the fused space, with the attribute heads of visual_learned.py: each query
product's raw image vector projected by the trained image head ("image->fused", as `similar --image` does) against
every product's stored fused vector; plus a wider colour-weight grid for the product's own fused vector.

Needs the caches of visual_similar.py and visual_learned.py, and the trained index (default out/fashion-shared).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/visual_photo.py
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
import visual_similar as v
from vitrina.engine.data.splits import heldout_bucket
from vitrina.engine.learn.fusion import FUSION_DIR, FusionModel

ids, types, colours, paths = v.read_catalog()
j = v.Judge(types, colours)
b = np.array([heldout_bucket(i) for i in ids])
split = {"valid": np.flatnonzero((b >= 0.2) & (b < 0.4)), "test": np.flatnonzero(b < 0.2)}
L = lambda n: np.load(v.CACHE / f"{n}.npy")
pad, fused, T, C = L("image-pad"), L("fused"), L("learned-type"), L("learned-colour")
model = FusionModel.load(v.DEFAULT_OUT / "fashion-shared" / FUSION_DIR)
photo = np.asarray(model.fused_query("image", pad), dtype=np.float32)


def run(name, query_vectors, wt, wc):
    r = {}
    for s, q in split.items():
        scores = query_vectors[q] @ fused.T + wt * (T[q] @ T.T) + wc * (C[q] @ C.T)
        r[s] = j.precision(q, scores)
    print(f"{name:14s} wt={wt:<4} wc={wc:<4} valid {r['valid'][0]:.4f} {r['valid'][1]:.4f}  test {r['test'][0]:.4f} {r['test'][1]:.4f}", flush=True)


for wt, wc in ((0, 0), (0.5, 0), (0.5, 0.3), (0.5, 0.5), (0.5, 0.75), (1.0, 0.5), (1.0, 0.75), (1.0, 1.0)):
    run("image->fused", photo, wt, wc)
for wt, wc in ((0.5, 0.75), (0.5, 1.0), (1.0, 0.75), (1.0, 1.0)):
    run("fused", fused, wt, wc)
