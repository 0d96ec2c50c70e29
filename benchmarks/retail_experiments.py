"""Online Retail next-purchase experiments (issue 18): re-buys, ALS confidence scaling, item-item.

Offline (numpy + implicit, no index): the log is the one `recommend.py` reads (positive quantities,
known customer), split by time into 14-day windows counted back from the last purchase: window 0 is
the last 14 days, window w the 14 days before window w-1. Each window's model sees only purchases
before it. Validation windows choose every setting; test windows are scored once with the chosen
settings. Recall@20 = share of a shopper's window products among the 20 (re-buys included), averaged
over shoppers who bought before the window; coverage = share of the catalog in anyone's top 20.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/retail_experiments.py
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, bm25_weight
from threadpoolctl import threadpool_limits

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
WINDOW_DAYS, K = 14, 20
PURCHASE_WEIGHT = 8.0  # the engine's weight of one purchase event


@dataclass
class Split:
    users: np.ndarray  # known window shoppers (train row ids)
    train: sp.csr_matrix  # users x items, summed event weight before the cut
    age: sp.csr_matrix  # users x items, days since the pair's latest purchase (stored as age + 1)
    truth: list[set[int]]  # per window shopper, the item columns bought in the window
    popular: np.ndarray  # log1p(shoppers) per item scaled to [0, 1]
    n_items: int


def load_log() -> tuple[pd.DataFrame, int]:
    raw = pd.read_csv(DATA / "online_retail" / "transactions.csv.gz", dtype={"StockCode": str, "CustomerID": str})
    raw = raw.dropna(subset=["CustomerID", "Description"])
    raw = raw[raw.Quantity > 0]
    log = pd.DataFrame({"user": raw.CustomerID.values, "product": raw.StockCode.values,
                        "t": pd.to_datetime(raw.InvoiceDate).values})
    items = {p: i for i, p in enumerate(sorted(log["product"].unique()))}
    log["item"] = log["product"].map(items)
    return log, len(items)


def make_split(log: pd.DataFrame, n_items: int, window: int) -> Split:
    end = log.t.max()
    cut = end - pd.Timedelta(days=WINDOW_DAYS * (window + 1))
    before, after = log[log.t <= cut], log[(log.t > cut) & (log.t <= cut + pd.Timedelta(days=WINDOW_DAYS))]
    users = {u: i for i, u in enumerate(before.user.unique())}
    rows = before.user.map(users).to_numpy()
    train = sp.csr_matrix((np.full(len(before), PURCHASE_WEIGHT, np.float32), (rows, before.item.to_numpy())),
                          shape=(len(users), n_items))
    last = before.assign(row=rows).groupby(["row", "item"]).t.max().reset_index()
    days = ((cut - last.t).dt.total_seconds() / 86400.0).to_numpy() + 1.0
    age = sp.csr_matrix((days, (last.row.to_numpy(), last.item.to_numpy())), shape=train.shape)
    after = after[after.user.isin(users)]
    truth = after.groupby("user").item.apply(set)
    counts = np.log1p(train.getnnz(axis=0).astype(np.float64))
    return Split(np.array([users[u] for u in truth.index]), train, age, list(truth.values), counts / counts.max(), n_items)


def scale01(scores: np.ndarray) -> np.ndarray:
    """Per row: scores scaled to [0, 1] by the row's min and max."""
    lo, hi = scores.min(axis=1, keepdims=True), scores.max(axis=1, keepdims=True)
    return (scores - lo) / np.where(hi > lo, hi - lo, 1.0)


def rebuy_scores(split: Split, half_life: float | None, count_power: float) -> np.ndarray:
    """Per window shopper x item: count^power x 0.5^(days since last purchase / half-life), scaled to [0, 1]."""
    counts = split.train[split.users].toarray() / PURCHASE_WEIGHT
    age = split.age[split.users].toarray() - 1.0
    decay = np.ones_like(age) if half_life is None else 0.5 ** (np.maximum(age, 0) / half_life)
    s = np.where(counts > 0, counts ** count_power * decay, 0.0)
    return s / np.maximum(s.max(axis=1, keepdims=True), 1e-12)


def confidence(train: sp.csr_matrix, scheme: str, alpha: float) -> sp.csr_matrix:
    m = train.copy().astype(np.float32)
    if scheme == "linear":
        m.data = m.data * alpha
    elif scheme == "log":
        m.data = 1.0 + alpha * np.log1p(m.data / PURCHASE_WEIGHT)
    elif scheme == "bm25":
        m = bm25_weight(train / PURCHASE_WEIGHT, K1=100, B=0.8).tocsr().astype(np.float32)
        m.data = m.data * alpha
    return m


def als_scores(split: Split, factors: int, reg: float, scheme: str, alpha: float, cosine: bool, iters: int = 15) -> np.ndarray:
    with threadpool_limits(1, "blas"):
        als = AlternatingLeastSquares(factors=factors, regularization=reg, iterations=iters, random_state=0,
                                      use_gpu=False)
        als.fit(confidence(split.train, scheme, alpha), show_progress=False)
    u, v = np.asarray(als.user_factors)[split.users], np.asarray(als.item_factors)
    if cosine:  # what the engine does today: cosine of unit vectors, (cos + 1) / 2
        u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        s = (u @ v.T + 1) / 2
        return np.where(split.train.getnnz(axis=0)[None, :] > 0, s, 0.0)
    return scale01(u @ v.T)


def itemitem_scores(split: Split, kind: str, neighbours: int) -> np.ndarray:
    model = (BM25Recommender(K=neighbours) if kind == "bm25" else CosineRecommender(K=neighbours))
    model.fit((split.train / PURCHASE_WEIGHT).tocsr(), show_progress=False)
    sim = model.similarity.tocsr()  # items x items
    return scale01((sp.csr_matrix(split.train[split.users] / PURCHASE_WEIGHT) @ sim).toarray())


def evaluate(split: Split, scores: np.ndarray, exclude_seen: bool = False) -> tuple[float, float]:
    """(mean recall@K, catalog coverage) of the top K per window shopper."""
    s = scores.astype(np.float64, copy=True)
    if exclude_seen:
        s[split.train[split.users].toarray() > 0] = -np.inf
    top = np.argpartition(-s, K, axis=1)[:, :K]
    recall = np.mean([len(truth & set(row.tolist())) / len(truth) for truth, row in zip(split.truth, top)])
    return float(recall), len(np.unique(top)) / split.n_items


def popularity_scores(split: Split) -> np.ndarray:
    return np.broadcast_to(split.popular + np.arange(split.n_items)[::-1] * 1e-9, (len(split.users), split.n_items))


def mean_over(splits: list[Split], make, exclude_seen: bool = False) -> tuple[float, float, float]:
    """(mean recall ratio to popularity, mean recall, mean coverage) over splits; make(split) -> scores."""
    ratios, recalls, covers = [], [], []
    for s in splits:
        r, c = evaluate(s, make(s), exclude_seen)
        ratios.append(r / evaluate(s, popularity_scores(s))[0])
        recalls.append(r)
        covers.append(c)
    return float(np.mean(ratios)), float(np.mean(recalls)), float(np.mean(covers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--validation", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--test", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "retail-experiments.json")
    args = parser.parse_args()
    log, n_items = load_log()
    val = [make_split(log, n_items, w) for w in args.validation]
    results: dict = {"validation_windows": args.validation, "test_windows": args.test, "stages": {}}

    def report(stage: str, name: str, value: tuple[float, float, float]) -> None:
        results["stages"].setdefault(stage, {})[name] = value
        print(f"{stage:10s} {name:60s} x{value[0]:.2f} recall {value[1]:.4f} coverage {value[2]:.3f}", flush=True)

    report("baseline", "popularity", mean_over(val, popularity_scores))
    # 1. re-buys alone: recency half-life and how much the purchase count counts
    for half, power in itertools.product((None, 7.0, 14.0, 30.0, 60.0, 120.0), (0.0, 0.5, 1.0)):
        report("rebuy", f"half-life {half}, count^{power}", mean_over(val, lambda s: rebuy_scores(s, half, power)))
    best_rebuy = max(results["stages"]["rebuy"], key=lambda k: results["stages"]["rebuy"][k][0])
    half, power = [eval(x.split()[-1].replace("count^", "")) for x in best_rebuy.split(", ")]
    # 2. ALS: scoring (cosine as the engine does, or dot), confidence scaling, then factors x regularisation
    t = time.time()
    cache: dict = {}

    def als(s: Split, *key) -> np.ndarray:
        k = (id(s), *key)
        if k not in cache:
            cache[k] = als_scores(s, *key)
        return cache[k]

    schemes = [("linear", 1.0), ("log", 1.0), ("log", 5.0), ("log", 20.0), ("bm25", 1.0), ("bm25", 0.1)]
    for (scheme, alpha), cos in itertools.product(schemes, (True, False)):
        name = f"{scheme} alpha {alpha}, {'cosine' if cos else 'dot'}, 64 factors, reg 0.05"
        report("als", name + " (incl. seen)", mean_over(val, lambda s: als(s, 64, 0.05, scheme, alpha, cos)))
        report("als-new", name + " (new items)", mean_over(val, lambda s: als(s, 64, 0.05, scheme, alpha, cos), True))
    print(f"({time.time() - t:.0f} s)")
    cache.clear()
    best_als = max(results["stages"]["als-new"], key=lambda k: results["stages"]["als-new"][k][0])
    results["best_als_scheme"] = best_als
    print("best ALS scheme on new items:", best_als)
    t = time.time()
    for factors, reg in itertools.product((16, 32, 64, 128), (0.05, 1.0, 10.0)):
        name = f"log alpha 1.0, dot, {factors} factors, reg {reg}"
        report("als-grid", name + " (new items)", mean_over(val, lambda s: als(s, factors, reg, "log", 1.0, False), True))
    print(f"({time.time() - t:.0f} s)")
    grid = results["stages"]["als-grid"]
    best = max(grid, key=lambda k: grid[k][0])
    factors, reg = int(best.split(", ")[2].split()[0]), float(best.split(", ")[3].split()[1])
    results["chosen_als"] = {"scheme": "log", "alpha": 1.0, "factors": factors, "regularization": reg}
    # 3. item-item co-purchase
    for kind, nb in itertools.product(("bm25", "cosine"), (50, 200)):
        report("itemitem", f"{kind}, {nb} neighbours (incl. seen)", mean_over(val, lambda s: itemitem_scores(s, kind, nb)))
        report("itemitem-new", f"{kind}, {nb} neighbours (new items)",
               mean_over(val, lambda s: itemitem_scores(s, kind, nb), True))
    ii = results["stages"]["itemitem-new"]
    kind, nb = max(ii, key=lambda k: ii[k][0]).split(", ")
    nb = int(nb.split()[0])
    # 4. blend: re-buys + ALS + item-item + popularity, weights on validation
    parts = {}
    for s in val:
        parts[id(s)] = (rebuy_scores(s, half, power), als(s, factors, reg, "log", 1.0, False),
                        itemitem_scores(s, kind, nb), popularity_scores(s))
    for wa, wi, wp in itertools.product((0.0, 0.1, 0.25, 0.5), (0.0, 0.1, 0.25, 0.5), (0.0, 0.05, 0.2)):
        report("blend", f"rebuy 1, als {wa}, itemitem {wi}, popularity {wp}",
               mean_over(val, lambda s: parts[id(s)][0] + wa * parts[id(s)][1] + wi * parts[id(s)][2] + wp * parts[id(s)][3]))
    blend = results["stages"]["blend"]
    chosen = max(blend, key=lambda k: blend[k][0])
    wa, wi, wp = [float(x.split()[-1]) for x in chosen.split(", ")[1:]]
    results["chosen_blend"] = {"rebuy_half_life": half, "count_power": power, "als": wa, "itemitem": wi,
                               "popularity": wp, "itemitem_kind": kind, "neighbours": nb}
    print("chosen:", results["chosen_blend"], results["chosen_als"])
    # test windows, once
    cache.clear()
    for w in args.test:
        s = make_split(log, n_items, w)
        pop = evaluate(s, popularity_scores(s))
        r, a, i = rebuy_scores(s, half, power), als_scores(s, factors, reg, "log", 1.0, False), itemitem_scores(s, kind, nb)
        rows = {"popularity": pop, "engine today (ALS cosine, 64 factors, seen excluded)":
                evaluate(s, als_scores(s, 64, 0.05, "linear", 1.0, True), True),
                "re-buys alone": evaluate(s, r), "tuned ALS, new items only": evaluate(s, a, True),
                "chosen blend": evaluate(s, r + wa * a + wi * i + wp * popularity_scores(s)),
                "chosen blend, new items only": evaluate(s, r + wa * a + wi * i + wp * popularity_scores(s), True)}
        results[f"test window {w}"] = {k: {"recall": v[0], "x_popularity": v[0] / pop[0], "coverage": v[1]}
                                      for k, v in rows.items()} | {"shoppers": len(s.users)}
        for k, v in rows.items():
            print(f"test {w} ({len(s.users)} shoppers) {k:55s} recall {v[0]:.4f} x{v[0] / pop[0]:.2f} coverage {v[1]:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
