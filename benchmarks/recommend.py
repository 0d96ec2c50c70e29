"""Next-purchase recommendations (issue 5) on ../shared/data: `vitrina recommend` against popularity.

H&M: the purchases in transactions.csv are split by time. The test window is the last 14 days; seven
earlier 14-day windows (each with only the purchases before it) choose the settings, so the test
window is scored once, with settings it had no say in. For each window the script copies an index of
hm/articles.csv (text and images), adds the purchases before the window (`vitrina events add`), runs
`vitrina train`, then asks for 20 products for every shopper who bought in the window. Recall@20 is
the share of a shopper's window purchases among the 20, averaged over shoppers. The popularity
baseline is the 20 products most shoppers bought before the window (the same list for everyone, and
what `recommend` gives an unknown shopper); "best sellers by purchases" counts purchase lines instead.

Online Retail: one split (last 14 days), a text-only index of the item descriptions, no training;
a denser log (about 400k purchase lines) to see how the defaults carry over.

    (cd benchmarks && ../.venv/bin/python recommend.py)
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchutil import DATA, DEFAULT_OUT, markdown_table
from vitrina.engine.config import RecommendConfig, VitrinaConfig
from vitrina.engine.query.personalise import load_behaviour
from vitrina.engine.query.recommend import best_sellers, popularity, score_for_user
from vitrina.engine.query.search import SearchSession

WINDOW_DAYS = 14
K = 20
HM_TEXT = "prod_name,product_type_name,colour_group_name,department_name,detail_desc"
GRID = [RecommendConfig(behaviour_weight=b, popularity_weight=p, half_life_days=h)
        for b, p, h in itertools.product((0.0, 0.3), (0.0, 0.15, 0.3), (None, 60.0))]
VITRINA = str(Path(sys.executable).parent / "vitrina")


def run(*args: str) -> tuple[float, float]:
    """Run the CLI; (wall seconds, peak RSS MiB of the children so far)."""
    started = time.perf_counter()
    subprocess.run([VITRINA, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def label(s: RecommendConfig) -> str:
    half = "none" if s.half_life_days is None else f"{s.half_life_days:g}d"
    return f"behaviour {s.behaviour_weight:g}, popularity {s.popularity_weight:g}, half-life {half}"


def score_window(index: Path, log: pd.DataFrame, cut: pd.Timestamp, settings: list[RecommendConfig]) -> pd.DataFrame:
    """Per window shopper: recall@K of popularity, ALS alone, and each settings (unknown shoppers get best sellers)."""
    session = SearchSession(index, VitrinaConfig(progress=False))
    model = load_behaviour(session)
    popular = popularity(model)
    rows_by_id = session.products.rows_by_id
    window = log[(log.t > cut) & (log.t <= cut + pd.Timedelta(days=WINDOW_DAYS))]
    window = window[window["product"].isin(rows_by_id.keys())]
    truth = window.groupby("user")["product"].apply(lambda ids: {rows_by_id[i] for i in ids})
    best = best_sellers(popular, K)  # what `recommend` gives an unknown shopper
    before = log[(log.t <= cut) & log["product"].isin(rows_by_id.keys())]
    by_purchases = before["product"].value_counts(sort=True).index[:K].map(rows_by_id).to_numpy()
    als_only = RecommendConfig(behaviour_weight=1.0, popularity_weight=0.0)
    records = []
    for user, bought in truth.items():
        record = {"user": user, "known": user in model.user_index, "popularity": len(set(best) & bought) / len(bought),
                  "best sellers by purchases": len(set(by_purchases.tolist()) & bought) / len(bought)}
        for name, s in [("ALS only", als_only), *((label(s), s) for s in settings)]:
            top = best
            if record["known"]:
                rows, scores = score_for_user(session, model, user, s, popular)
                top = rows[np.lexsort((rows, -scores))[:K]]
            record[name] = len(set(top.tolist()) & bought) / len(bought)
        records.append(record)
    return pd.DataFrame(records)


def hm_windows(args: argparse.Namespace, results: dict) -> None:
    base = args.out / "hm"
    if not (base / "manifest.json").is_file():
        run("index", str(DATA / "hm" / "articles.csv"), "--out", str(base), "--id-field", "article_id",
            "--text-fields", HM_TEXT, "-q")
    log = pd.read_csv(DATA / "hm" / "transactions.csv", dtype={"article_id": str, "customer_id": str})
    log = log.rename(columns={"customer_id": "user", "article_id": "product"})
    log["t"] = pd.to_datetime(log.t_dat)
    end = log.t.max()
    frames = []
    for w in range(args.windows):
        cut = end - pd.Timedelta(days=WINDOW_DAYS * (w + 1))
        index = args.out / f"hm-rec-{w}"
        shutil.rmtree(index, ignore_errors=True)
        shutil.copytree(base, index)
        events = args.out / f"hm-rec-{w}-events.csv"
        log[log.t <= cut][["t_dat", "user", "product"]].to_csv(events, index=False)
        run("events", "add", str(index), str(events), "--user-field", "user", "--product-field", "product",
            "--timestamp-field", "t_dat", "--default-event", "purchase")
        seconds, peak = run("train", str(index), "-q")
        if w == 0:
            results["train"] = {"wall_s": round(seconds, 1), "peak_rss_mib_children": round(peak)}
            print(f"vitrina train on H&M ({cut.date()} cut): {seconds:.1f} s wall", flush=True)
        frame = score_window(index, log, cut, GRID)
        frame["window"] = w
        frames.append(frame)
        print(f"window {w} (after {cut.date()}): {frame.known.sum()} known shoppers of {len(frame)}, "
              f"popularity {frame[frame.known].popularity.mean():.4f}", flush=True)
        if not args.keep:
            shutil.rmtree(index)
        events.unlink()
    data = pd.concat(frames)
    known = data[data.known]
    methods = ["popularity", "best sellers by purchases", "ALS only", *map(label, GRID)]
    val, test = known[known.window > 0], known[known.window == 0]
    val_mean = val[methods].mean()
    chosen = max(map(label, GRID), key=lambda m: val_mean[m])
    default = label(RecommendConfig())
    rows = []
    for m in methods:
        per_window = val.groupby("window")[m].mean() / val.groupby("window")["popularity"].mean().clip(lower=1e-9)
        rows.append([m + (" (chosen)" if m == chosen else "") + (" (default)" if m == default else ""),
                     f"{val_mean[m]:.4f}", f"{val_mean[m] / val_mean['popularity']:.2f}x",
                     f"{per_window.median():.2f}x", f"{test[m].mean():.4f}",
                     f"{test[m].mean() / test['popularity'].mean():.2f}x",
                     f"{data[data.window == 0][m].mean():.4f}"])
    print(markdown_table(["H&M recall@20, known shoppers", f"val ({len(val)} shopper-windows)", "val / pop",
                          "val median window / pop", f"test ({len(test)})", "test / pop",
                          f"test, all {int((data.window == 0).sum())} shoppers"], rows))
    results["hm"] = {"chosen": chosen, "default": default, "val_shopper_windows": len(val), "test_shoppers": len(test),
                     "val": val_mean.round(4).to_dict(), "test": test[methods].mean().round(4).to_dict(),
                     "test_all_shoppers": data[data.window == 0][methods].mean().round(4).to_dict()}


def online_retail(args: argparse.Namespace, results: dict) -> None:
    raw = pd.read_csv(DATA / "online_retail" / "transactions.csv.gz", dtype={"StockCode": str, "CustomerID": str})
    raw = raw.dropna(subset=["CustomerID", "Description"])
    raw = raw[raw.Quantity > 0]
    catalog = args.out / "online-retail-items.csv"
    raw.groupby("StockCode").Description.first().reset_index().rename(
        columns={"StockCode": "id", "Description": "title"}).to_csv(catalog, index=False)
    log = raw.rename(columns={"CustomerID": "user", "StockCode": "product"})
    log["t"] = pd.to_datetime(log.InvoiceDate)
    cut = log.t.max() - pd.Timedelta(days=WINDOW_DAYS)
    index = args.out / "online-retail-rec"
    run("index", str(catalog), "--out", str(index), "--image-model", "none", "-q")
    events = args.out / "online-retail-events.csv"
    log[log.t <= cut][["InvoiceDate", "user", "product"]].to_csv(events, index=False)
    run("events", "add", str(index), str(events), "--user-field", "user", "--product-field", "product",
        "--timestamp-field", "InvoiceDate", "--default-event", "purchase")
    events.unlink()
    settings = [RecommendConfig(), replace(RecommendConfig(), behaviour_weight=0.3)]
    frame = score_window(index, log, cut, settings)
    known = frame[frame.known]
    methods = ["popularity", "best sellers by purchases", "ALS only", *map(label, settings)]
    rows = [[m, f"{known[m].mean():.4f}", f"{known[m].mean() / known['popularity'].mean():.2f}x"] for m in methods]
    print(markdown_table([f"Online Retail recall@20, {len(known)} known shoppers", "recall@20", "/ popularity"], rows))
    results["online_retail"] = {"shoppers": len(known), **known[methods].mean().round(4).to_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--windows", type=int, default=8, help="14-day windows: the last is the test, the rest choose")
    parser.add_argument("--keep", action="store_true", help="keep each window's index")
    parser.add_argument("--only", choices=("hm", "online_retail"))
    args = parser.parse_args()
    results: dict = {"grid": [asdict(s) for s in GRID]}
    if args.only != "online_retail":
        hm_windows(args, results)
    if args.only != "hm":
        online_retail(args, results)
    out = args.out / "recommend.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
