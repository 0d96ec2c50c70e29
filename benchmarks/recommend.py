"""Next-purchase recommendations (issues 5 and 18) on ../shared/data: `vitrina recommend` against popularity.

H&M: the purchases in transactions.csv are split by time. The test window is the last 14 days; seven
earlier 14-day windows (each with only the purchases before it) choose the settings, so the test
window is scored once, with settings it had no say in. For each window the script copies an index of
hm/articles.csv (text and images), adds the purchases before the window (`vitrina events add`), runs
`vitrina train`, then asks for 20 products for every shopper who bought in the window. Recall@20 is
the share of a shopper's window purchases among the 20, averaged over shoppers. Two baselines: the 20
products most shoppers bought before the window (what `recommend` gives an unknown shopper) and the 20
with the most purchase lines ("best sellers by purchases"). Each method (HM_METHODS) is scored on every
window; the choice is the best median, over the validation windows, of recall / the stronger baseline.

Online Retail: 14-day windows back from the last purchase (window 0 = the last 14 days, window w the 14
days before window w-1); windows 0 and 1 are the test windows, 2-4 choose (RETAIL_METHODS). A
text-only index of the item descriptions, no training; `--retail-shoppers N` scores a fixed random N
(seed 0) of each window's known shoppers. Coverage, on every row: the share of the catalog in any
scored shopper's top 20. "default recommend" is `recommend` with no option: own products (re-buys)
included or not as the shop's log decides (`RecommendConfig.seen_share`).

    (cd benchmarks && PYTHONPATH=.. ../.venv/bin/python recommend.py)
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchutil import DATA, DEFAULT_OUT, markdown_table
from vitrina.engine.config import RecommendConfig, VitrinaConfig
from vitrina.engine.learn.behaviour import BehaviourConfig, BehaviourModel
from vitrina.engine.query.personalise import load_behaviour
from vitrina.engine.query.recommend import best_sellers, includes_seen, popularity, score_for_user
from vitrina.engine.query.search import SearchSession

WINDOW_DAYS = 14
K = 20
HM_TEXT = "prod_name,product_type_name,colour_group_name,department_name,detail_desc"
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


@dataclass(frozen=True)
class Method:
    """One way to recommend: `recommend` settings, own products (None: the shop's log decides, as by
    default), and the ALS settings when they differ from the index's (refit in-process on the same events)."""

    name: str
    settings: RecommendConfig = RecommendConfig()
    include_seen: bool | None = None
    als: BehaviourConfig | None = None


def refit(model: BehaviourModel, als: BehaviourConfig) -> BehaviourModel:
    """The same events fitted with other ALS settings (same users and products; a copy)."""
    other = copy.copy(model)
    other.settings = als
    other._refit(show_progress=False)
    return other


def score_window(index: Path, log: pd.DataFrame, cut: pd.Timestamp, settings: list[RecommendConfig],
                 seen_settings: tuple[RecommendConfig, ...] = (), coverage: dict | None = None,
                 max_shoppers: int = 0, methods: tuple[Method, ...] = (), info: dict | None = None) -> pd.DataFrame:
    """Per window shopper: recall@K of popularity, ALS alone, each settings and each method (unknown shoppers
    get best sellers); `seen_settings` are scored with the shopper's own products included (re-buys).
    `coverage` collects, per method, the product rows in any known shopper's top K (the baselines' 20
    included). `info` receives the log's repeat share and whether the default includes own products."""
    session = SearchSession(index, VitrinaConfig(progress=False))
    model = load_behaviour(session)
    baseline = RecommendConfig(popularity_by="shoppers", popularity_half_life_days=None)
    popular = popularity(model, baseline)  # the popularity baseline: most shoppers, all time
    if info is not None:
        info.update(repeat_share=model.repeat_share, default_includes_seen=includes_seen(model, RecommendConfig()))
    models = {m.als: refit(model, m.als) for m in methods if m.als is not None}
    populars: dict = {}
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
    if coverage is not None:
        coverage.setdefault("popularity", set()).update(best.tolist())
        coverage.setdefault("best sellers by purchases", set()).update(by_purchases.tolist())
    runs = [Method("ALS only", als_only, False), *(Method(label(s), s, False) for s in settings),
            *(Method(seen_label(s), s, True) for s in seen_settings), *methods]
    records = []
    for user, bought in truth.items():
        record = {"user": user, "known": user in model.user_index, "popularity": len(set(best) & bought) / len(bought),
                  "best sellers by purchases": len(set(by_purchases.tolist()) & bought) / len(bought)}
        for m in runs:
            top = best
            if record["known"]:
                used = models.get(m.als, model)
                key = (m.settings.popularity_by, m.settings.popularity_half_life_days)
                if key not in populars:
                    populars[key] = popularity(model, m.settings)
                seen = includes_seen(used, m.settings, m.include_seen)
                rows, scores = score_for_user(session, used, user, m.settings, populars[key], include_seen=seen)
                top = rows[np.lexsort((rows, -scores))[:K]]
                if coverage is not None:
                    coverage.setdefault(m.name, set()).update(top.tolist())
            record[m.name] = len(set(top.tolist()) & bought) / len(bought)
        records.append(record)
    return pd.DataFrame(records)


DEFAULT = RecommendConfig()
HM_METHODS = (  # the default, then the ideas tried against the purchase-count best sellers (validation chooses)
    Method("default recommend", DEFAULT),
    Method("own products included (--include-seen)", DEFAULT, True),
    Method("popularity by purchase lines", replace(DEFAULT, popularity_by="weight")),
    Method("popularity half-life 30d", replace(DEFAULT, popularity_half_life_days=30.0)),
)
# also scored on the test window only, on 2026-11-30 (they lost there and the busy machine could not
# afford them on all 8 windows; RESULTS.md): popularity 0.3, popularity 0.3 by purchase lines, popularity
# by purchase lines with half-life 30d, and ALS with log confidence and dot product, alone and at 0.3
HM_DROPPED = (
    Method("popularity 0.3", replace(DEFAULT, popularity_weight=0.3)),
    Method("popularity 0.3 by purchase lines", replace(DEFAULT, popularity_weight=0.3, popularity_by="weight")),
    Method("popularity by purchase lines, half-life 30d", replace(DEFAULT, popularity_by="weight",
                                                                  popularity_half_life_days=30.0)),
    Method("popularity 0.3 by purchase lines, half-life 30d", replace(
        DEFAULT, popularity_weight=0.3, popularity_by="weight", popularity_half_life_days=30.0)),
    Method("ALS only, log confidence, dot product", RecommendConfig(behaviour_weight=1.0, popularity_weight=0.0),
           False, BehaviourConfig(confidence="log", scoring="dot")),
    Method("behaviour 0.3 (ALS log confidence, dot product)", replace(DEFAULT, behaviour_weight=0.3), None,
           BehaviourConfig(confidence="log", scoring="dot")),
)


def hm_windows(args: argparse.Namespace, results: dict) -> None:
    """Window 0 (the last 14 days) is the test window; windows 1-7 choose. Every method is scored on every
    window; the choice is the best median over the validation windows of recall / the stronger baseline."""
    base = args.out / "hm"
    if not (base / "manifest.json").is_file():
        run("index", str(DATA / "hm" / "articles.csv"), "--out", str(base), "--id-field", "article_id",
            "--text-fields", HM_TEXT, "-q")
    log = pd.read_csv(DATA / "hm" / "transactions.csv", dtype={"article_id": str, "customer_id": str})
    log = log.rename(columns={"customer_id": "user", "article_id": "product"})
    log["t"] = pd.to_datetime(log.t_dat)
    end = log.t.max()
    n_products = len(pd.read_csv(DATA / "hm" / "articles.csv", usecols=["article_id"]))
    frames, covered, infos = [], {}, {}
    for w in range(args.windows):
        cut = end - pd.Timedelta(days=WINDOW_DAYS * (w + 1))
        tag = "-untrained" if args.hm_no_train else ""
        saved = args.out / f"hm-rec-{w}{tag}-scores.json"  # each window's scores, so a stopped run resumes (--resume)
        if args.resume and saved.is_file():
            kept = json.loads(saved.read_text())
            frames.append(pd.DataFrame(kept["frame"]))
            covered[w], infos[w] = kept["coverage"], kept["info"]
            continue
        index = args.out / f"hm-rec-{w}{tag}"
        shutil.rmtree(index, ignore_errors=True)
        shutil.copytree(base, index)
        events = args.out / f"hm-rec-{w}{tag}-events.csv"
        log[log.t <= cut][["t_dat", "user", "product"]].to_csv(events, index=False)
        run("events", "add", str(index), str(events), "--user-field", "user", "--product-field", "product",
            "--timestamp-field", "t_dat", "--default-event", "purchase")
        seconds, peak = run("train", str(index), "-q") if not args.hm_no_train else (0.0, 0.0)
        if w == 0 and not args.hm_no_train:
            results["train"] = {"wall_s": round(seconds, 1), "peak_rss_mib_children": round(peak)}
            print(f"vitrina train on H&M ({cut.date()} cut): {seconds:.1f} s wall", flush=True)
        coverage, info = {}, {}
        frame = score_window(index, log, cut, [], (), coverage, 0, HM_METHODS + (HM_DROPPED if args.hm_all else ()), info)
        frame["window"] = w
        frames.append(frame)
        covered[w] = {m: len(rows) / n_products for m, rows in coverage.items()}
        infos[w] = info
        saved.write_text(json.dumps({"frame": frame.to_dict(orient="list"), "coverage": covered[w], "info": info}))
        print(f"window {w} (after {cut.date()}): {frame.known.sum()} known shoppers of {len(frame)}, "
              f"popularity {frame[frame.known].popularity.mean():.4f}, repeat share {info['repeat_share']:.3f}, "
              f"default includes own products: {info['default_includes_seen']}", flush=True)
        if not args.keep:
            shutil.rmtree(index)
        events.unlink()
    data = pd.concat(frames)
    known = data[data.known]
    methods = ["popularity", "best sellers by purchases", "ALS only", *(m.name for m in HM_METHODS)]
    per = known.groupby("window")[methods].mean()
    stronger = per[["popularity", "best sellers by purchases"]].max(axis=1).clip(lower=1e-9)
    val_windows = [w for w in per.index if w > 0]
    choice = {m.name: (per.loc[val_windows, m.name] / stronger[val_windows]).median() for m in HM_METHODS}
    chosen = max(choice, key=choice.get)
    rows = []
    for m in methods:
        vs_pop = per[m] / per["popularity"].clip(lower=1e-9)
        vs_lines = per[m] / per["best sellers by purchases"].clip(lower=1e-9)
        cov = np.mean([covered[w].get(m, 0.0) for w in per.index])
        rows.append([m + (" (chosen)" if m == chosen else ""), f"{vs_pop[val_windows].median():.2f}x",
                     f"{vs_lines[val_windows].median():.2f}x", f"{vs_pop.median():.2f}x", f"{vs_lines.median():.2f}x",
                     f"{per.loc[0, m]:.4f} ({vs_pop[0]:.2f}x / {vs_lines[0]:.2f}x)", f"{cov:.3f}"])
    print(markdown_table(["H&M recall@20, known shoppers", "val median / popularity", "val median / purchase lines",
                          "8-window median / popularity", "8-window median / purchase lines",
                          "test window (x pop / x lines)", "coverage (mean)"], rows))
    print(markdown_table(["window", *methods], [[str(w), *(f"{per.loc[w, m]:.4f}" for m in methods)] for w in per.index]))
    results["hm"] = {"chosen": chosen, "choice_val_median_vs_stronger": {k: round(v, 3) for k, v in choice.items()},
                     "per_window": {int(w): {"shoppers": int((known.window == w).sum()), **infos[w],
                                             "recall": per.loc[w].round(4).to_dict(),
                                             "coverage": {m: round(c, 4) for m, c in covered[w].items()}}
                                    for w in per.index}}


ALS_LOG_DOT = BehaviourConfig(confidence="log", scoring="dot")
RETAIL_METHODS = (  # the default (own products by the log's repeat share), then ALS blended on top (validation chooses)
    Method("default recommend", DEFAULT),
    Method("own products left out (--exclude-seen)", DEFAULT, False),
    Method("behaviour 0.25, ALS as indexed (linear confidence, cosine)", replace(DEFAULT, behaviour_weight=0.25)),
    Method("behaviour 0.25, ALS log confidence, dot product", replace(DEFAULT, behaviour_weight=0.25), None, ALS_LOG_DOT),
    Method("behaviour 0.25, ALS BM25 confidence, dot product", replace(DEFAULT, behaviour_weight=0.25), None,
           BehaviourConfig(confidence="bm25", scoring="dot")),
    Method("behaviour 0.25, ALS log, dot, 128 factors, reg 10", replace(DEFAULT, behaviour_weight=0.25), None,
           BehaviourConfig(factors=128, regularization=10.0, confidence="log", scoring="dot")),
)


def online_retail(args: argparse.Namespace, results: dict) -> None:
    """Windows 0 and 1 (the last 28 days) are the test windows; the earlier ones choose.
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
    methods = ["popularity", "best sellers by purchases", "ALS only", *(m.name for m in RETAIL_METHODS)]
    frames, covered, infos = [], {}, {}
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
        coverage, info = {}, {}
        frame = score_window(index, log, cut, [], (), coverage, args.retail_shoppers, RETAIL_METHODS, info)
        frame = frame[frame.known].assign(window=w)
        frames.append(frame)
        covered[w] = {m: len(rows) / n_products for m, rows in coverage.items()}
        infos[w] = info
        print(f"Online Retail window {w} (after {cut.date()}): {len(frame)} known shoppers, popularity "
              f"{frame.popularity.mean():.4f}, default {frame['default recommend'].mean():.4f}, repeat share "
              f"{info['repeat_share']:.3f}, default includes own products: {info['default_includes_seen']}", flush=True)
        if not args.keep:
            shutil.rmtree(index)
    data = pd.concat(frames)
    test_windows = [w for w in args.retail_windows if w < 2]
    val = data[~data.window.isin(test_windows)]
    ratio = lambda part, m: part.groupby("window")[m].mean() / part.groupby("window")["popularity"].mean()
    chosen = max((m.name for m in RETAIL_METHODS), key=lambda m: ratio(val, m).mean()) if len(val) else None
    header = [f"Online Retail recall@20 (x popularity, coverage), windows {args.retail_windows}"]
    header += [f"window {w}" + (" (test)" if w in test_windows else " (val)") for w in args.retail_windows]
    rows = []
    for m in methods:
        per = ratio(data, m)
        rows.append([m + (" (chosen)" if m == chosen else "")] + [
            f"{data[data.window == w][m].mean():.4f} ({per[w]:.2f}x, cov {covered[w].get(m, 0.0):.2f})"
            for w in args.retail_windows])
    print(markdown_table(header, rows))
    results["online_retail"] = {"chosen": chosen, "shoppers_sampled": args.retail_shoppers, "windows": {int(w): {
        "shoppers": int((data.window == w).sum()), **infos[w],
        "recall": data[data.window == w][methods].mean().round(4).to_dict(),
        "coverage": {m: round(c, 4) for m, c in covered[w].items()}} for w in args.retail_windows}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--windows", type=int, default=8, help="14-day windows: the last is the test, the rest choose")
    parser.add_argument("--keep", action="store_true", help="keep each window's index")
    parser.add_argument("--resume", action="store_true", help="H&M: reuse the windows a stopped run already scored")
    parser.add_argument("--hm-all", action="store_true", help="H&M: also the methods in HM_DROPPED")
    parser.add_argument("--hm-no-train", action="store_true",
                        help="H&M: no `vitrina train` (likeness in the text space), for a busy machine")
    parser.add_argument("--only", choices=("hm", "online_retail"))
    parser.add_argument("--retail-windows", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="Online Retail 14-day windows back from the end: 0 and 1 test, the rest choose")
    parser.add_argument("--retail-shoppers", type=int, default=0, metavar="N",
                        help="score a fixed random N of each Online Retail window's known shoppers (0: all)")
    args = parser.parse_args()
    results: dict = {"hm_methods": [asdict(m) for m in HM_METHODS], "retail_methods": [asdict(m) for m in RETAIL_METHODS]}
    if args.only != "online_retail":
        hm_windows(args, results)
    if args.only != "hm":
        online_retail(args, results)
    out = args.out / "recommend.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
