"""Online Retail "frequently bought together" (issue 18), offline: co-purchases in the same invoice.

Baskets = invoices. For a window (14 days counted back from the end, as in retail_experiments.py),
co-purchase counts come from the invoices before it; each window invoice with 2+ items gives (seed,
rest) pairs; hit rate@10 = share of the basket's other items among the seed's 10 (sampled 4,000
pairs, fixed seed). Window 1 chooses the scoring; window 0 is the test, scored once.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bought_together_experiments.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from retail_experiments import DATA, WINDOW_DAYS

K, PAIRS = 10, 4000


def baskets() -> tuple[pd.DataFrame, int]:
    raw = pd.read_csv(DATA / "online_retail" / "transactions.csv.gz", dtype={"StockCode": str, "InvoiceNo": str})
    raw = raw.dropna(subset=["Description"])
    raw = raw[raw.Quantity > 0]
    items = {p: i for i, p in enumerate(sorted(raw.StockCode.unique()))}
    log = pd.DataFrame({"basket": raw.InvoiceNo.values, "item": raw.StockCode.map(items).values,
                        "t": pd.to_datetime(raw.InvoiceDate).values}).drop_duplicates(["basket", "item"])
    return log, len(items)


def scores(before: pd.DataFrame, n: int, how: str) -> sp.csr_matrix:
    codes = before.basket.astype("category").cat.codes.to_numpy()
    b = sp.csr_matrix((np.ones(len(before), np.float32), (codes, before.item.to_numpy())), shape=(codes.max() + 1, n))
    c = (b.T @ b).tocsr().astype(np.float64)
    c.setdiag(0)
    c.eliminate_zeros()
    count = np.asarray(b.sum(axis=0)).ravel() + 1.0
    if how == "count":
        return c
    if how == "cosine":  # count / sqrt(n_i n_j)
        return sp.diags(1 / np.sqrt(count)) @ c @ sp.diags(1 / np.sqrt(count))
    if how == "conditional^0.5":  # P(j | i) / n_j^0.5
        return sp.diags(1 / count) @ c @ sp.diags(1 / np.sqrt(count))
    raise ValueError(how)


def evaluate(log: pd.DataFrame, n: int, window: int, how: str) -> tuple[float, float]:
    end = log.t.max()
    cut = end - pd.Timedelta(days=WINDOW_DAYS * (window + 1))
    before, after = log[log.t <= cut], log[(log.t > cut) & (log.t <= cut + pd.Timedelta(days=WINDOW_DAYS))]
    s = scores(before, n, how).tocsr() if how != "popularity" else None
    pop = np.bincount(before.item, minlength=n).astype(np.float64)
    groups = [g.to_numpy() for _, g in after.groupby("basket").item if g.nunique() > 1]
    rng = np.random.default_rng(0)
    hits, seen = [], set()
    for _ in range(PAIRS):
        basket = groups[rng.integers(len(groups))]
        seed = basket[rng.integers(len(basket))]
        row = pop.copy() if s is None else s[seed].toarray().ravel() + 1e-9 * pop / pop.max()  # ties: popularity
        row[seed] = -np.inf
        top = np.argpartition(-row, K)[:K]
        seen.update(top.tolist())
        rest = set(basket.tolist()) - {seed}
        hits.append(len(rest & set(top.tolist())) / len(rest))
    return float(np.mean(hits)), len(seen) / n


def main() -> None:
    log, n = baskets()
    methods = ["popularity", "count", "cosine", "conditional^0.5"]
    val = {m: evaluate(log, n, 1, m) for m in methods}
    for m, (hit, cov) in val.items():
        print(f"validation window 1  {m:18s} hit rate@{K} {hit:.4f}  items reached {cov:.3f}", flush=True)
    chosen = max(methods, key=lambda m: val[m][0])
    for m in ("popularity", chosen):
        hit, cov = evaluate(log, n, 0, m)
        print(f"test window 0        {m:18s} hit rate@{K} {hit:.4f}  items reached {cov:.3f}" + (" (chosen)" if m == chosen else ""))


if __name__ == "__main__":
    main()
