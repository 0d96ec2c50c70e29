"""Behaviour in search on H&M (issue 18): does `search --user` rank a shopper's next purchases higher?

Index: a copy of benchmarks/out/hm-grouped (H&M articles, text + image, one hit per product_code group;
no events, no training), found at --base. Events are fed as benchmarks/recommend.py feeds H&M: the
purchases of hm/transactions.csv before the window, `vitrina events add --default-event purchase`
(user = customer_id, product = article_id, timestamp = t_dat). Split by time: window w = the 14 days
ending 14*w days before the last purchase (window 0 = the last 14 days, the issue's test window); the
behaviour model sees only purchases before the window.

Queries: for each sampled shopper (fixed seed; shoppers with a purchase both before and in the
window) and each product type they bought in the window, the query is that type's
product_type_name ("Trousers", "Sweater"). Relevant: the product groups (product_code) of the
shopper's window purchases of that type. The same query is searched plainly and with `user=` (the
library's `Index.search`, what `search --user` runs: the default space and mode, the best 100 re-ranked
with the shopper's behaviour vector at weight 0.3). Metrics over the first 100 groups: recall@20,
nDCG@20, and the rank of the first relevant group (101 when not in the 100). Nothing is tuned here.

    (cd benchmarks && PYTHONPATH=.. nice -n 5 ../.venv/bin/python search_personalised.py)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchutil import DATA, DEFAULT_OUT, markdown_table
from vitrina import Index
from vitrina.engine.config import VitrinaConfig

WINDOW_DAYS, DEPTH, K = 14, 100, 20
VITRINA = str(Path(sys.executable).parent / "vitrina")


def metrics(ranked: list[str], relevant: set[str]) -> dict[str, float]:
    """recall@K, nDCG@K and first relevant rank (DEPTH + 1 when absent) of ranked groups."""
    gains = [1.0 if g in relevant else 0.0 for g in ranked[:K]]
    ideal = sum(1 / np.log2(i + 2) for i in range(min(len(relevant), K)))
    first = next((i + 1 for i, g in enumerate(ranked[:DEPTH]) if g in relevant), DEPTH + 1)
    return {"recall@20": sum(gains) / len(relevant), "ndcg@20": sum(g / np.log2(i + 2) for i, g in enumerate(gains)) / ideal,
            "first_rank": float(first), "found@100": float(first <= DEPTH)}


def run_window(args: argparse.Namespace, log: pd.DataFrame, articles: pd.DataFrame, w: int) -> pd.DataFrame:
    end = log.t.max()
    cut = end - pd.Timedelta(days=WINDOW_DAYS * (w + 1))
    index_dir = args.out / f"hm-search-personal-{w}"
    shutil.rmtree(index_dir, ignore_errors=True)
    shutil.copytree(args.base, index_dir, ignore=shutil.ignore_patterns("events", "behaviour"))
    events = args.out / f"hm-search-personal-{w}.csv"
    log[log.t <= cut][["t_dat", "user", "product"]].to_csv(events, index=False)
    subprocess.run([VITRINA, "events", "add", str(index_dir), str(events), "--user-field", "user", "--product-field",
                    "product", "--timestamp-field", "t_dat", "--default-event", "purchase"], check=True,
                   stdout=subprocess.DEVNULL)
    events.unlink()
    index = Index(index_dir, VitrinaConfig(progress=False))
    window = log[(log.t > cut) & (log.t <= cut + pd.Timedelta(days=WINDOW_DAYS))]
    before = set(log[log.t <= cut].user)
    shoppers = sorted(set(window.user) & before)
    rng = np.random.default_rng(0)
    if args.shoppers and len(shoppers) > args.shoppers:
        shoppers = sorted(rng.choice(shoppers, args.shoppers, replace=False).tolist())
    group = dict(zip(articles.article_id, articles.product_code))
    kind = dict(zip(articles.article_id, articles.product_type_name))
    records = []
    for user in shoppers:
        bought = window[window.user == user]["product"].unique()
        for query in sorted({kind[p] for p in bought if p in kind and isinstance(kind[p], str)}):
            relevant = {group[p] for p in bought if kind.get(p) == query}
            plain = index.search(query, DEPTH)
            personal = index.search(query, DEPTH, user=user)
            row = {"window": w, "user": user, "query": query, "personalised": bool(personal.personalised)}
            for name, hits in (("plain", plain), ("user", personal)):
                for metric, value in metrics([group.get(h.id, h.id) for h in hits], relevant).items():
                    row[f"{name} {metric}"] = value
            records.append(row)
    if not args.keep:
        shutil.rmtree(index_dir)
    frame = pd.DataFrame(records)
    print(f"window {w} (after {cut.date()}): {len(shoppers)} shoppers, {len(frame)} queries, "
          f"{frame.personalised.mean():.2f} personalised", flush=True)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--base", type=Path, default=DEFAULT_OUT / "hm-grouped", help="the H&M index to copy")
    parser.add_argument("--windows", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shoppers", type=int, default=300, help="shoppers sampled per window (0: all)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    log = pd.read_csv(DATA / "hm" / "transactions.csv", dtype={"article_id": str, "customer_id": str})
    log = log.rename(columns={"customer_id": "user", "article_id": "product"})
    log["t"] = pd.to_datetime(log.t_dat)
    articles = pd.read_csv(DATA / "hm" / "articles.csv", dtype={"article_id": str, "product_code": str})
    data = pd.concat([run_window(args, log, articles, w) for w in args.windows])
    names = ["recall@20", "ndcg@20", "first_rank", "found@100"]
    rows = []
    for w, part in [*data.groupby("window"), ("all", data)]:
        rows.append([f"window {w}" + (" (test)" if w == 0 else ""), str(len(part))]
                    + [f"{part[f'plain {m}'].mean():.4f} / {part[f'user {m}'].mean():.4f}" for m in names])
    print(markdown_table(["H&M query = a next purchase's product type", "queries",
                          *[f"{m} plain / --user" for m in names]], rows))
    better = (data["user ndcg@20"] > data["plain ndcg@20"]).mean()
    worse = (data["user ndcg@20"] < data["plain ndcg@20"]).mean()
    print(f"nDCG@20: personalised better on {better:.2%} of queries, worse on {worse:.2%}")
    summary = {str(w): {m: {"plain": round(float(part[f"plain {m}"].mean()), 4), "user": round(float(part[f"user {m}"].mean()), 4)}
                        for m in names} | {"queries": len(part)} for w, part in [*data.groupby("window"), ("all", data)]}
    summary["better_share"], summary["worse_share"] = float(better), float(worse)
    summary["seconds"] = round(time.perf_counter() - started)
    path = args.out / "search-personalised.json"
    path.write_text(json.dumps(summary, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
