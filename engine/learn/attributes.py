"""Attribute heads: small classifiers that predict catalog attributes (e.g. articleType, baseColour) from a
product's frozen image vector (and its colour descriptor, where the index stores one).

`vitrina train --attributes articleType,baseColour` learns one head per named column on the products the
shared-space heads train on (never the held-out or validation ones). A product's descriptor for a column is
sqrt(predicted distribution), unit length, so the dot product of two descriptors says how alike the two
predictions are. `similar` then ranks by fused cosine + sum of w_i x descriptor cosine_i: the "similar"
space stores [fused, sqrt(w_i) x descriptor_i] / sqrt(1 + sum w_i) per product, one FAISS search.
The weights are chosen on the validation products (each column's precision@10 no lower than without the
heads, then the most hits sharing every attribute); photo queries (`similar --image`, no title) get their own
weights, applied on the query side. On fashion: notes/issue18-visual.md and benchmarks/RESULTS.md.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vitrina.encoders.base import l2_normalize
from vitrina.engine.errors import QueryError
from vitrina.index import IndexDirectory, ProductTable

ATTRIBUTES_STATE = "attributes.json"
ATTRIBUTES_ARRAYS = "attributes.npz"
SIMILAR_SPACE = "similar"  # fused vectors + attribute descriptors: what `similar` searches once trained with them
COLOUR_SPACE = "colour"  # per-image colour descriptors, where the index stores them (encoders/colour.py)
FEATURE_SPACES = (COLOUR_SPACE, "image")  # the head input, in this order: [colour descriptor, image vector]


@dataclass(frozen=True)
class AttributeConfig:
    """How the attribute heads are learned and weighed (defaults measured on fashion, notes/issue18-visual.md)."""

    hidden: int = 512  # hidden units of each head (0: a linear head)
    dropout: float = 0.2
    epochs: int = 20  # passes over the training products, in shuffled mini-batches
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    grid: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)  # weights tried per column on the validation products
    max_queries: int = 2000  # validation products used as queries when choosing weights (a fixed sample)
    neighbours: int = 10  # precision@N decides the weights
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", tuple(float(w) for w in self.grid))
        if self.hidden < 0 or self.epochs < 1 or self.batch_size < 2 or self.learning_rate <= 0 \
                or not 0.0 <= self.dropout < 1.0:
            raise QueryError("attribute heads need hidden >= 0, epochs >= 1, batch size >= 2, learning rate > 0 "
                             "and dropout in [0, 1)")
        if not self.grid or any(not 0.0 <= w < float("inf") for w in self.grid) or 0.0 not in self.grid:
            raise QueryError("the attribute weight grid must hold finite weights >= 0, 0 among them")
        if self.max_queries < 1 or self.neighbours < 1:
            raise QueryError("max_queries and neighbours must be >= 1")


@dataclass
class AttributeHead:
    """One column's classifier (numpy at query time): standardise, then Linear (-> ReLU -> Linear)."""

    column: str
    labels: list[str]
    mean: np.ndarray
    scale: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]  # (W: (in, out), b: (out,)) each

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(n, len(labels)) predicted distributions of `features` rows."""
        x = (np.asarray(features, dtype=np.float32) - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            x = x @ w + b
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        x = np.exp(x - x.max(axis=1, keepdims=True))
        return x / x.sum(axis=1, keepdims=True)

    def descriptors(self, features: np.ndarray) -> np.ndarray:
        """Unit-length sqrt(predicted distribution) per row (dot product = Bhattacharyya coefficient)."""
        return l2_normalize(np.sqrt(self.probabilities(features)))


@dataclass
class AttributeHeads:
    """The heads of the named columns, what they read, and the weights `similar` gives them."""

    heads: list[AttributeHead]
    inputs: dict[str, str]  # feature space -> the encoder name its vectors came from, in FEATURE_SPACES order
    weights: list[float]  # per head, for product queries (stored in the similar space)
    photo_weights: list[float]  # per head, for photo queries (applied to the query)
    report: dict = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return [head.column for head in self.heads]

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha1(json.dumps([self.columns, self.weights, self.photo_weights]).encode())
        for head in self.heads:
            for w, b in head.layers:
                digest.update(np.ascontiguousarray(w).tobytes() + np.ascontiguousarray(b).tobytes())
        return digest.hexdigest()[:12]

    def usable(self, sources: dict[str, str]) -> str | None:
        """Why these heads cannot read the index's feature vectors (`sources`: space -> encoder), or None."""
        for space, encoder in self.inputs.items():
            if sources.get(space) != encoder:
                have = sources.get(space)
                return (f"the attribute heads read {space} vectors of {encoder}, "
                        + (f"this index has {have}" if have else f"this index has no {space} vectors"))
        return None

    def blocks(self, features: np.ndarray) -> list[np.ndarray]:
        """Each head's descriptors of `features` rows."""
        return [head.descriptors(features) for head in self.heads]

    def product_vectors(self, fused: np.ndarray, descriptors: list[np.ndarray]) -> np.ndarray:
        """Similar-space vectors: [fused, sqrt(w_i) x descriptor_i] / sqrt(1 + sum w_i) (zero blocks: no image)."""
        parts = [np.asarray(fused, np.float32)] + [np.sqrt(w) * d for w, d in zip(self.weights, descriptors)]
        return (np.hstack(parts) / np.sqrt(1.0 + sum(self.weights))).astype(np.float32)

    def photo_queries(self, fused_query: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Query vectors of photos: their fused-space query and their descriptors at the photo weights."""
        parts = [np.asarray(fused_query, np.float32)]
        for w, p, d in zip(self.weights, self.photo_weights, self.blocks(features)):
            parts.append((p / np.sqrt(w) if w > 0 else 0.0) * d)
        return (np.hstack(parts) / np.sqrt(1.0 + sum(self.weights))).astype(np.float32)

    def save(self, directory: Path) -> None:
        """attributes.json and attributes.npz in `directory` (the index's fusion folder)."""
        arrays = {}
        for i, head in enumerate(self.heads):
            arrays[f"{i}.mean"], arrays[f"{i}.scale"] = head.mean, head.scale
            for j, (w, b) in enumerate(head.layers):
                arrays[f"{i}.{j}.w"], arrays[f"{i}.{j}.b"] = w, b
        np.savez(directory / ATTRIBUTES_ARRAYS, **arrays)
        state = {"heads": [{"column": h.column, "labels": h.labels, "layers": len(h.layers)} for h in self.heads],
                 "inputs": self.inputs, "weights": self.weights, "photo_weights": self.photo_weights,
                 "report": self.report, "fingerprint": self.fingerprint}
        (directory / ATTRIBUTES_STATE).write_text(json.dumps(state, indent=2, default=str) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "AttributeHeads | None":
        """The heads saved in `directory`, or None where there are none (an index trained without --attributes)."""
        if not (directory / ATTRIBUTES_STATE).is_file():
            return None
        try:
            state = json.loads((directory / ATTRIBUTES_STATE).read_text())
            arrays = np.load(directory / ATTRIBUTES_ARRAYS)
            heads = [AttributeHead(h["column"], list(h["labels"]), arrays[f"{i}.mean"], arrays[f"{i}.scale"],
                                   [(arrays[f"{i}.{j}.w"], arrays[f"{i}.{j}.b"]) for j in range(int(h["layers"]))])
                     for i, h in enumerate(state["heads"])]
            loaded = cls(heads, dict(state["inputs"]), [float(w) for w in state["weights"]],
                         [float(w) for w in state["photo_weights"]], state.get("report", {}))
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise QueryError(f"the attribute heads in {directory} are damaged ({exc}); run `vitrina train` again") from None
        if loaded.fingerprint != state.get("fingerprint") or len(loaded.weights) != len(heads):
            raise QueryError(f"the attribute heads in {directory} do not match their record; run `vitrina train` again")
        return loaded


def check_columns(products: ProductTable, columns: tuple[str, ...]) -> None:
    """A clear error for an attribute column the catalog lacks (naming the columns it has)."""
    have = [c for c in products.table.column_names if c != "id"]
    for column in columns:
        if column not in have:
            raise QueryError(f"--attributes names the column {column!r}, which the catalog does not have; "
                             f"its columns: {', '.join(have) or 'none'}")


def column_labels(products: ProductTable, column: str) -> np.ndarray:
    """The column's values as strings per product row ('' where missing)."""
    values = products.table.column(column).to_pylist()
    return np.array(["" if v is None else str(v).strip() for v in values], dtype=object)


def feature_inputs(directory: IndexDirectory) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """(features, product rows, space -> encoder) of the products with an image vector: [colour, image]."""
    image = directory.spaces.get("image")
    if image is None or not len(image.rows):
        raise QueryError("attribute heads read the products' image vectors, and this index has none: "
                         "index a catalog with images")
    rows = np.asarray(image.rows, dtype=np.int64)
    blocks, sources = [], {}
    colour = directory.spaces.get(COLOUR_SPACE)
    if colour is not None and len(colour.rows):
        stored, found = colour.vectors_of_rows(rows)
        block = np.zeros((len(rows), stored.shape[1]), np.float32)
        block[found] = stored
        blocks.append(block)
        sources[COLOUR_SPACE] = directory.manifest.spaces[COLOUR_SPACE].encoder
    blocks.append(np.asarray(image.vectors, dtype=np.float32))
    sources["image"] = directory.manifest.spaces["image"].encoder
    return np.hstack(blocks), rows, sources


def _fit_head(column: str, features: np.ndarray, labels: np.ndarray, settings: AttributeConfig) -> AttributeHead:
    """Learn one column's head on (features, labels) rows (full batch, cross-entropy)."""
    import torch

    torch.manual_seed(settings.seed)
    classes, y = np.unique(labels.astype(str), return_inverse=True)
    mean = features.mean(0).astype(np.float32)
    scale = (features.std(0) + 1e-6).astype(np.float32)
    x = torch.from_numpy(((features - mean) / scale).astype(np.float32))
    target = torch.from_numpy(y.astype(np.int64))
    nn = torch.nn
    if settings.hidden:
        net = nn.Sequential(nn.Dropout(settings.dropout), nn.Linear(x.shape[1], settings.hidden), nn.ReLU(),
                            nn.Dropout(settings.dropout), nn.Linear(settings.hidden, len(classes)))
    else:
        net = nn.Sequential(nn.Linear(x.shape[1], len(classes)))
    optimiser = torch.optim.Adam(net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    net.train()
    generator = torch.Generator().manual_seed(settings.seed)
    for _ in range(settings.epochs):
        for batch in torch.randperm(len(x), generator=generator).split(settings.batch_size):
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x[batch]), target[batch])
            loss.backward()
            optimiser.step()
    linear = [m for m in net if isinstance(m, nn.Linear)]
    layers = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in linear]
    return AttributeHead(column, [str(c) for c in classes], mean, scale, layers)


def precision_table(base: np.ndarray, gallery_base: np.ndarray, descriptors: list[np.ndarray],
                    gallery_descriptors: list[np.ndarray], query_rows: np.ndarray, gallery_rows: np.ndarray,
                    labels: list[np.ndarray], combos: list[tuple[float, ...]], k: int = 10) -> np.ndarray:
    """(len(combos), columns + 1) precision@k of each weight combo: per column, then all columns at once.

    Query i (product row query_rows[i]) scores the gallery by base cosine + sum w_j x descriptor cosine_j,
    itself excluded; a hit counts for a column when its label equals the query's."""
    out = np.zeros((len(combos), len(labels) + 1))
    for start in range(0, len(query_rows), 256):
        part = slice(start, start + 256)
        qrows = query_rows[part]
        base_scores = base[part] @ gallery_base.T
        extra = [d[part] @ g.T for d, g in zip(descriptors, gallery_descriptors)]
        own = qrows[:, None] == gallery_rows[None, :]
        for c, weights in enumerate(combos):
            scores = base_scores + sum(w * e for w, e in zip(weights, extra))
            scores[own] = -np.inf
            top = gallery_rows[np.argpartition(-scores, k, axis=1)[:, :k]]
            same = [lab[top] == lab[qrows][:, None] for lab in labels]
            for j, hit in enumerate(same):
                out[c, j] += hit.mean(1).sum()
            out[c, -1] += np.logical_and.reduce(same).mean(1).sum()
    return out / max(1, len(query_rows))


def choose(combos: list[tuple[float, ...]], table: np.ndarray) -> int:
    """The combo with the most hits sharing every attribute among those that keep each column's precision
    at least that of no attribute terms (combo 0, all weights zero); ties: the smaller weights."""
    keeps = np.all(table[:, :-1] >= table[0, :-1] - 1e-9, axis=1)
    candidates = [c for c in range(len(combos)) if keeps[c]]
    return max(candidates, key=lambda c: (round(float(table[c, -1]), 6), -sum(combos[c])))


def train_attribute_heads(directory: IndexDirectory, columns: tuple[str, ...], fused: tuple[np.ndarray, np.ndarray],
                          photo_query: Callable[[np.ndarray], np.ndarray] | None, train: np.ndarray, validation: np.ndarray,
                          settings: AttributeConfig = AttributeConfig()) -> AttributeHeads:
    """Heads for `columns` trained on the `train` product rows (a mask), weights chosen on `validation` ones.

    fused: the products' (fused vectors, rows); photo_query: product rows -> the fused-space query of their photos
    alone (None: photo queries get no attribute terms).
    """
    started = time.perf_counter()
    check_columns(directory.products, columns)
    features, feature_rows, sources = feature_inputs(directory)
    n = len(directory.products)
    labels = [column_labels(directory.products, column) for column in columns]
    heads, accuracy = [], {}
    for column, lab in zip(columns, labels):
        rows = feature_rows[train[feature_rows] & (lab[feature_rows] != "")]
        if len(set(lab[rows])) < 2:
            raise QueryError(f"the attribute column {column!r} has {len(set(lab[rows]))} distinct value(s) among the "
                             f"{len(rows)} training products with an image; it needs at least 2")
        position = np.searchsorted(feature_rows, rows)
        head = _fit_head(column, features[position], lab[rows], settings)
        heads.append(head)
        val = feature_rows[validation[feature_rows] & (lab[feature_rows] != "")]
        if len(val):
            predicted = np.array(head.labels, dtype=object)[head.probabilities(features[np.searchsorted(feature_rows, val)]).argmax(1)]
            accuracy[column] = round(float((predicted == lab[val]).mean()), 4)

    # every product's descriptors (zeros: no image) and fused vector (zeros: none), by product row
    full = [np.zeros((n, len(h.labels)), np.float32) for h in heads]
    for block, d in zip(full, [h.descriptors(features) for h in heads]):
        block[feature_rows] = d
    fused_vectors, fused_rows = fused
    base = np.zeros((n, fused_vectors.shape[1]), np.float32)
    base[fused_rows] = fused_vectors
    gallery = np.asarray(fused_rows, np.int64)
    has_image = np.zeros(n, bool)
    has_image[feature_rows] = True
    known = np.logical_and.reduce([lab != "" for lab in labels])
    queries = np.flatnonzero(validation & has_image & known & np.isin(np.arange(n), gallery))
    if len(queries) > settings.max_queries:
        queries = np.sort(np.random.default_rng(settings.seed).choice(queries, settings.max_queries, replace=False))
    combos = list(itertools.product(settings.grid, repeat=len(columns)))
    weights = photo = [0.0] * len(columns)
    report: dict = {"columns": list(columns), "inputs": list(sources), "accuracy": accuracy,
                    "validation_queries": int(len(queries)), "trained_on": int(train[feature_rows].sum())}
    if len(queries) >= 2:
        descriptors = [f[queries] for f in full]
        gallery_descriptors = [f[gallery] for f in full]
        k = min(settings.neighbours, len(gallery) - 1)
        table = precision_table(base[queries], base[gallery], descriptors, gallery_descriptors, queries, gallery,
                                labels, combos, k)
        chosen = choose(combos, table)
        weights = list(combos[chosen])
        photo_combos = [c for c in combos if all(p == 0 or w > 0 for p, w in zip(c, weights))]
        if photo_query is None:
            photo_combos = photo_combos[:1]
        photo_base = photo_query(queries) if photo_query is not None else np.zeros_like(base[queries])
        photo_table = precision_table(photo_base, base[gallery], descriptors, gallery_descriptors, queries, gallery,
                                      labels, photo_combos, k)
        photo = list(photo_combos[choose(photo_combos, photo_table)])
        names = [*columns, "+".join(columns)]
        report["validation"] = {
            "product": {"none": dict(zip(names, table[0].round(4).tolist())),
                        "chosen": dict(zip(names, table[chosen].round(4).tolist()))},
            "photo": {"none": dict(zip(names, photo_table[0].round(4).tolist())),
                      "chosen": dict(zip(names, photo_table[photo_combos.index(tuple(photo))].round(4).tolist()))},
        }
    else:
        report["note"] = "too few validation products to choose weights: the attribute terms are off"
    report["weights"], report["photo_weights"] = weights, photo
    report["seconds"] = round(time.perf_counter() - started, 1)
    return AttributeHeads(heads, sources, [float(w) for w in weights], [float(w) for w in photo], report)


def photo_features(heads: AttributeHeads, image_vectors: np.ndarray, colour: np.ndarray | None) -> np.ndarray:
    """The head input of query photos: [colour descriptor, image vector], as `feature_inputs` reads products."""
    if COLOUR_SPACE not in heads.inputs:
        return np.asarray(image_vectors, np.float32)
    if colour is None:
        raise QueryError("the attribute heads read colour descriptors, and none were given for the photos")
    return np.hstack([np.asarray(colour, np.float32), np.asarray(image_vectors, np.float32)])


def similar_space_vectors(heads: AttributeHeads, directory: IndexDirectory, fused: tuple[np.ndarray, np.ndarray]
                          ) -> tuple[np.ndarray, np.ndarray] | str:
    """The similar space's (vectors, rows) for the fused products, or why it cannot be made (a note)."""
    try:
        features, feature_rows, sources = feature_inputs(directory)
    except QueryError as exc:
        return str(exc)
    why = heads.usable(sources)
    if why is not None:
        return why
    fused_vectors, fused_rows = fused
    position = {int(r): i for i, r in enumerate(feature_rows)}
    index = np.array([position.get(int(r), -1) for r in fused_rows], dtype=np.int64)
    blocks = []
    for d in heads.blocks(features):
        block = np.zeros((len(fused_rows), d.shape[1]), np.float32)
        block[index >= 0] = d[index[index >= 0]]
        blocks.append(block)
    return heads.product_vectors(fused_vectors, blocks), np.asarray(fused_rows, np.int64)
