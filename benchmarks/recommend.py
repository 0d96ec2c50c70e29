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


def seen_label(s: RecommendConfig) -> str:
    half = "none" if s.rebuy_half_life_days is None else f"{s.rebuy_half_life_days:g}d"
    return (f"include seen: re-buy {s.rebuy_weight:g} (half-life {half}, count^{s.rebuy_count_power:g}), "
            f"behaviour {s.behaviour_weight:g}, popularity {s.popularity_weight:g}")


def score_window(index: Path, log: pd.DataFrame, cut: pd.Timestamp, settings: list[RecommendConfig],
                 seen_settings: tuple[RecommendConfig, ...] = (), coverage: dict | None = None,
                 max_shoppers: int = 0) -> pd.DataFrame:
    """Per window shopper: recall@K of popularity, ALS alone, and each settings (unknown shoppers get best
    sellers); `seen_settings` are scored with the shopper's own products included (re-buys). `coverage`
    collects, per method, the product rows in any known shopper's top K."""
    session = SearchSession(index, VitrinaConfig(progress=False))
    model = load_behaviour(session)
    popular = popularity(model)
    rows_by_id = session.products.rows_by_id
    window = log[(log.t > cut) & (log.t <= cut + pd.Timedelta(days=WINDOW_DAYS))]
    window = window[window["product"].isin(rows_by_id.keys())]
    if max_shoppers:  # a fixed random subsample of the window's known shoppers (the same for every method)
        known = pd.Series([u for u in window.user.unique() if u in model.user_index])
        window = window[window.user.isin(known.sample(min(max_shoppers, len(known)), random_state=0))]
    truth = window.groupby("user")["product"].apply(lambda ids: {rows_by_id[i] for i in ids})
    best = best_sellers(popular, K)  # what `recommend` gives an unknown shopper
    before = log[(log.t <= cut) & log["product"].isin(rows_by_id.keys())]
    by_purchases = before["product"].value_counts(sort=True).index[:K].map(rows_by_id).to_numpy()
    als_only = RecommendConfig(behaviour_weight=1.0, popularity_weight=0.0)
    records = []
    for user, bought in truth.items():
        record = {"user": user, "known": user in model.user_index, "popularity": len(set(best) & bought) / len(bought),
                  "best sellers by purchases": len(set(by_purchases.tolist()) & bought) / len(bought)}
        runs = [("ALS only", als_only, False), *((label(s), s, False) for s in settings),
                *((seen_label(s), s, True) for s in seen_settings)]
        for name, s, seen in runs:
            top = best
            if record["known"]:
                rows, scores = score_for_user(session, model, user, s, popular, include_seen=seen)
                top = rows[np.lexsort((rows, -scores))[:K]]
                if coverage is not None:
                    coverage.setdefault(name, set()).update(top.tolist())
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


RETAIL_SEEN = [RecommendConfig(rebuy_weight=r) for r in (0.0, 1.0, 4.0)]  # half-life and count power: retail_experiments.py


def online_retail(args: argparse.Namespace, results: dict) -> None:
    """Windows 0 and 1 (the last 28 days) are the test windows; the earlier ones choose the re-buy weight.
    Coverage: share of the catalog in any scored shopper's top 20 (so it shrinks with a subsample)."""
    raw = pd.read_csv(DATA / "online_retail" / "transactions.csv.gz", dtype={"StockCode": str, "CustomerID": str})
    raw = raw.dropna(subset=["CustomerID", "Description"])
    raw = raw[raw.Quantity > 0]
    catalog = args.out / "online-retail-items.csv"
    raw.groupby("StockCode").Description.first().reset_index().rename(
        columns={"StockCode": "id", "Description": "title"}).to_csv(catalog, index=False)
    n_products = raw.StockCode.nunique()
    log = raw.rename(columns={"CustomerID": "user", "StockCode": "product"})
    log["t"] = pd.to_datetime(log.InvoiceDate)
    base = args.out / "online-retail-rec"
    if not (base / "manifest.json").is_file():
        run("index", str(catalog), "--out", str(base), "--image-model", "none", "-q")
    settings = [RecommendConfig(), replace(RecommendConfig(), behaviour_weight=0.3)]
    methods = ["popularity", "best sellers by purchases", "ALS only", *map(label, settings), *map(seen_label, RETAIL_SEEN)]
    frames, covered = [], {}
    for w in args.retail_windows:
        cut = log.t.max() - pd.Timedelta(days=WINDOW_DAYS * (w + 1))
        index = args.out / f"online-retail-rec-{w}"
        shutil.rmtree(index, ignore_errors=True)
        shutil.copytree(base, index)
        events = args.out / "online-retail-events.csv"
        log[log.t <= cut][["InvoiceDate", "user", "product"]].to_csv(events, index=False)
        run("events", "add", str(index), str(events), "--user-field", "user", "--product-field", "product",
            "--timestamp-field", "InvoiceDate", "--default-event", "purchase")
        events.unlink()
        coverage: dict = {}
        frame = score_window(index, log, cut, settings, tuple(RETAIL_SEEN), coverage, args.retail_shoppers)
        frame = frame[frame.known].assign(window=w)
        frames.append(frame)
        covered[w] = {m: len(rows) / n_products for m, rows in coverage.items()}
        print(f"Online Retail window {w} (after {cut.date()}): {len(frame)} known shoppers, popularity "
              f"{frame.popularity.mean():.4f}, default {frame[label(settings[0])].mean():.4f}", flush=True)
        if not args.keep:
            shutil.rmtree(index)
    data = pd.concat(frames)
    test_windows = [w for w in args.retail_windows if w < 2]
    val = data[~data.window.isin(test_windows)]
    ratio = lambda part, m: part.groupby("window")[m].mean() / part.groupby("window")["popularity"].mean()
    chosen = max(map(seen_label, RETAIL_SEEN), key=lambda m: ratio(val, m).mean()) if len(val) else None
    header = [f"Online Retail recall@20 / popularity (coverage), windows {args.retail_windows}"]
    header += [f"window {w}" + (" (test)" if w in test_windows else " (val)") for w in args.retail_windows]
    rows = []
    for m in methods:
        per = ratio(data, m)
        rows.append([m + (" (chosen)" if m == chosen else "")] + [
            f"{data[data.window == w][m].mean():.4f} ({per[w]:.2f}x, cov {covered[w].get(m, 20 / n_products):.2f})"
            for w in args.retail_windows])
    print(markdown_table(header, rows))
    results["online_retail"] = {"chosen": chosen, "windows": {int(w): {
        "shoppers": int((data.window == w).sum()), "recall": data[data.window == w][methods].mean().round(4).to_dict(),
        "coverage": {m: round(c, 4) for m, c in covered[w].items()}} for w in args.retail_windows}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--windows", type=int, default=8, help="14-day windows: the last is the test, the rest choose")
    parser.add_argument("--keep", action="store_true", help="keep each window's index")
    parser.add_argument("--only", choices=("hm", "online_retail"))
    parser.add_argument("--retail-windows", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="Online Retail 14-day windows back from the end: 0 and 1 test, the rest choose")
    parser.add_argument("--retail-shoppers", type=int, default=0, metavar="N",
                        help="score a fixed random N of each Online Retail window's known shoppers (0: all)")
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
