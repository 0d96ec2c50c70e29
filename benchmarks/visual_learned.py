"""Prototype (issue 18, visual): learned attribute heads as extra "similar" score terms, on held-out products.

Two linear softmax heads (torch, full batch, 300 Adam steps, inputs standardised) are trained on the
products with heldout_bucket >= 0.4 only: articleType from the EfficientNet-Lite0 vector, baseColour
from [colour histogram (encoders/colour.py default), EfficientNet-Lite0 vector]. Each product's
sqrt(predicted probabilities), L2-normalised, is a descriptor; a query scores a product by
base cosine + wt x type-descriptor cosine + wc x colour-descriptor cosine, base = the raw image vector
(pad) or the fused vector of the trained index. Queries: validation (0.2 <= bucket < 0.4, settings
chosen there) and test (bucket < 0.2), against all 8,083 products, itself excluded.

Needs the caches of visual_similar.py (out/visual/image-pad.npy, fused.npy, colour-*.npy). Writes
out/visual/learned-{type,colour}.npy (weight decay 1e-2 heads) and out/learned_both.json.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/visual_learned.py
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np, time, torch, json
import visual_similar as v
from vitrina.engine.data.splits import heldout_bucket
torch.manual_seed(0); torch.set_num_threads(1)
ids, types, colours, paths = v.read_catalog()
j = v.Judge(types, colours)
b = np.array([heldout_bucket(i) for i in ids])
test, valid, train = np.flatnonzero(b < 0.2), np.flatnonzero((b >= 0.2) & (b < 0.4)), np.flatnonzero(b >= 0.4)
pad = np.load('benchmarks/out/visual/image-pad.npy'); fused = np.load('benchmarks/out/visual/fused.npy')
hist = np.load('benchmarks/out/visual/colour-lab488-fg245-c0.3.npy')
def head(X, labels, wd):
    t = time.time()
    labels = np.array(labels); rows = train[labels[train] != '']
    classes, y = np.unique(labels[rows], return_inverse=True)
    mu, sd = X[rows].mean(0), X[rows].std(0) + 1e-6
    Xt = torch.tensor((X - mu) / sd, dtype=torch.float32)
    lin = torch.nn.Linear(X.shape[1], len(classes)); opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=wd)
    yt = torch.tensor(y)
    for step in range(300):
        opt.zero_grad(); loss = torch.nn.functional.cross_entropy(lin(Xt[rows]), yt); loss.backward(); opt.step()
    with torch.no_grad(): P = torch.softmax(lin(Xt), 1).numpy()
    pred = classes[P.argmax(1)]
    acc = {s: round(float((pred[q] == labels[q]).mean()), 4) for s, q in (('valid', valid), ('test', test))}
    D = np.sqrt(P); D /= np.linalg.norm(D, axis=1, keepdims=True)
    print(f'  head wd={wd} acc {acc} loss {loss.item():.3f} in {time.time()-t:.0f}s', flush=True)
    return D.astype(np.float32)
T = {wd: head(pad, types, wd) for wd in (1e-3, 1e-2)}
C = {wd: head(np.hstack([hist, pad]), colours, wd) for wd in (1e-3, 1e-2)}
np.save('benchmarks/out/visual/learned-type.npy', T[1e-2]); np.save('benchmarks/out/visual/learned-colour.npy', C[1e-2])
res = []
for bn, base in (('pad', pad), ('fused', fused)):
  for twd in T:
    for cwd in C:
      for wt in (0, 0.2, 0.5, 1.0):
        for wc in (0, 0.1, 0.2, 0.3, 0.5):
            r = {s: j.precision(q, v.scores_of([(base, 1.0), (T[twd], wt), (C[cwd], wc)], q)) for s, q in (('valid', valid), ('test', test))}
            res.append((bn, twd, cwd, wt, wc, r))
            print(f'{bn} twd={twd} cwd={cwd} wt={wt:<4} wc={wc:<4} valid {r["valid"][0]:.4f} {r["valid"][1]:.4f}  test {r["test"][0]:.4f} {r["test"][1]:.4f}', flush=True)
Path('benchmarks/out/learned_both.json').write_text(json.dumps(res))
