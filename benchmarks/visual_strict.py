"""Strict gallery for visual_learned.py: test queries (bucket < 0.2) against only the 3,230 products that no
attribute head was trained on (bucket < 0.4: test + validation), so no gallery descriptor saw its own label.
(The shared-space heads behind "fused" did train on the validation products.)

    PYTHONPATH=$PWD .venv/bin/python benchmarks/visual_strict.py
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
import visual_similar as v
from vitrina.engine.data.splits import heldout_bucket
ids, types, colours, paths = v.read_catalog()
b = np.array([heldout_bucket(i) for i in ids])
sub = np.flatnonzero(b < 0.4)
j = v.Judge([types[i] for i in sub], [colours[i] for i in sub])
bs = b[sub]; test = np.flatnonzero(bs < 0.2); valid = np.flatnonzero(bs >= 0.2)
L = lambda n: np.load(f'benchmarks/out/visual/{n}.npy')[sub]
pad, fused, T, C = L('image-pad'), L('fused'), L('learned-type'), L('learned-colour')
hist = L('colour-lab488-fg245-c0.3')
print('gallery', len(sub), 'ceiling test', j.ceiling(test))
for name, parts in [('pad', [(pad, 1)]), ('pad + hist 0.05', [(pad, 1), (hist, 0.05)]),
                    ('pad + type 1.0 + colour 0.5', [(pad, 1), (T, 1.0), (C, 0.5)]),
                    ('pad + type 1.0 + colour 0.3', [(pad, 1), (T, 1.0), (C, 0.3)]),
                    ('fused (valid products trained by heads)', [(fused, 1)]),
                    ('fused + type 1.0 + colour 0.3', [(fused, 1), (T, 1.0), (C, 0.3)]),
                    ('fused + type 0.5 + colour 0.5', [(fused, 1), (T, 0.5), (C, 0.5)])]:
    r = j.precision(test, v.scores_of(parts, test))
    print(f'{name:45s} test type {r[0]:.4f} type+colour {r[1]:.4f}')
