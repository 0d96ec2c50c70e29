"""Online Retail "frequently bought together" through the engine (issue 18): `recommend --product`.

Data (as benchmarks/recommend.py and bought_together_experiments.py prepare it): the purchase lines of
online_retail/transactions.csv.gz with a positive quantity and a description; the catalog is the 3,665
items bought by known customers (recommend.py's text index of the item descriptions, reused when one
is at benchmarks/out/online-retail-rec). Baskets = invoices (InvoiceNo -> the events' basket_id); a
line without a customer id gets the shopper "guest-<invoice>" (one-off shopper), so its basket counts.

Split by time, 14-day windows back from the last purchase (as retail_experiments.py): window 0 = the
last 14 days (the test window), window 1 = the 14 days before (validation). For each window a copy of
the index gets `vitrina events add` of the purchases before the window (with --basket-field), so the
counts know nothing of the window. Then, for 4,000 (window invoice with 2+ catalog items, seed item)
pairs sampled with a fixed seed, the engine's answer (engine.query.bought_together, the code behind
`recommend --product`) gives 10 products; hit rate@10 = share of the invoice's other items among them.
Items reached = share of the catalog in any of the answers. Popularity = the 10 items in most baskets
before the window (the seed left out). The validation window chooses the scoring, the minimum number of
distinct shoppers per pair and whether the fill counts; the test window is scored once with the choice
(plus popularity, and the chosen setting with 1 and 2 minimum shoppers and with the fill switched, for
their cost, not for choosing). "Seeds < 10 partners": the pairs whose seed was bought with fewer than
10 other products before the window, where the fill with similar products acts.

    (cd benchmarks && PYTHONPATH=.. nice -n 5 ../.venv/bin/python bought_together.py)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from benchutil import DATA, DEFAULT_OUT, markdown_table
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.query.bought_together import BoughtTogetherConfig, bought_together
from vitrina.engine.query.personalise import load_behaviour
from vitrina.engine.query.search import SearchSession

WINDOW_DAYS, K, PAIRS = 14, 10, 4000
VITRINA = str(Path(sys.executable).parent / "vitrina")
GRID = [BoughtTogetherConfig(scoring=s, min_shoppers=m, fill=f)
        for s in ("count", "cosine") for m in (1, 2, 3) for f in (True, False)]


def label(s: BoughtTogetherConfig) -> str:
    return f"{s.scoring}, min shoppers {s.min_shoppers}, {'filled with similar' if s.fill else 'no fill'}"


def purchases() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(purchase lines: basket, user, product, InvoiceDate, t; the catalog: id, title)."""
    raw = pd.read_csv(DATA / "online_retail" / "transactions.csv.gz",
                      dtype={"StockCode": str, "CustomerID": str, "InvoiceNo": str})
    raw = raw.dropna(subset=["Description"])
    raw = raw[raw.Quantity > 0]
    known = raw.dropna(subset=["CustomerID"])
    catalog = known.groupby("StockCode").Description.first().reset_index().rename(
        columns={"StockCode": "id", "Description": "title"})
    raw = raw[raw.StockCode.isin(catalog.id)]
    log = pd.DataFrame({"basket_id": raw.InvoiceNo.values, "product": raw.StockCode.values,
                        "user": raw.CustomerID.fillna("guest-" + raw.InvoiceNo).values,
                        "InvoiceDate": raw.InvoiceDate.values, "t": pd.to_datetime(raw.InvoiceDate).values})
    return log, catalog


def base_index(out: Path, catalog: pd.DataFrame) -> Path:
    base = out / "online-retail-rec"
    if not (base / "manifest.json").is_file():
        items = out / "online-retail-items.csv"
        catalog.to_csv(items, index=False)
        subprocess.run([VITRINA, "index", str(items), "--out", str(base), "--image-model", "none", "-q"], check=True)
    return base


def window_index(out: Path, base: Path, log: pd.DataFrame, cut: pd.Timestamp, name: str, baskets: bool = True) -> Path:
    index = out / name
    shutil.rmtree(index, ignore_errors=True)
    shutil.copytree(base, index, ignore=shutil.ignore_patterns("events", "behaviour"))
    events = out / f"{name}-events.csv"
    columns = ["InvoiceDate", "user", "product"] + (["basket_id"] if baskets else [])  # without: the session rule
    log[log.t <= cut][columns].to_csv(events, index=False)
    started = time.perf_counter()
    subprocess.run([VITRINA, "events", "add", str(index), str(events), "--user-field", "user", "--product-field",
                    "product", "--timestamp-field", "InvoiceDate", "--default-event", "purchase",
                    "--basket-field", "basket_id"], check=True, stdout=subprocess.DEVNULL)
    print(f"  events add ({(log.t <= cut).sum()} lines): {time.perf_counter() - started:.0f} s", flush=True)
    events.unlink()
    return index


def sampled_pairs(log: pd.DataFrame, cut: pd.Timestamp) -> list[tuple[str, set[str]]]:
    """(seed item, the basket's other items) for PAIRS window baskets with 2+ items, fixed seed."""
    window = log[(log.t > cut) & (log.t <= cut + pd.Timedelta(days=WINDOW_DAYS))]
    groups = [sorted(set(g)) for _, g in window.groupby("basket_id")["product"] if g.nunique() > 1]
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(PAIRS):
        basket = groups[rng.integers(len(groups))]
        seed = basket[rng.integers(len(basket))]
        pairs.append((seed, set(basket) - {seed}))
    return pairs


def score(index: Path, log: pd.DataFrame, cut: pd.Timestamp, grid: list[BoughtTogetherConfig]) -> dict:
    session = SearchSession(index, VitrinaConfig(image_model=None, progress=False))
    model = load_behaviour(session)
    pairs = sampled_pairs(log, cut)
    before = log[log.t <= cut].drop_duplicates(["basket_id", "product"])["product"].value_counts()
    popular = [p for p in before.index[: K + 1]]
    together = model.co_purchase.together
    partners = np.diff(together.indptr) - (together.diagonal() > 0)  # products bought with each, before the window
    rows = session.products.rows_by_id
    few = np.asarray([partners[rows[seed]] < K for seed, _ in pairs])  # seeds whose co-purchases cannot fill 10
    out: dict = {"seeds_with_fewer_than_10_partners": int(few.sum())}
    hits, reached = [], set()
    for seed, rest in pairs:
        top = [p for p in popular if p != seed][:K]
        reached.update(top)
        hits.append(len(rest & set(top)) / len(rest))
    out["popularity"] = {"hit_rate": float(np.mean(hits)), "items_reached": len(reached) / len(session.products),
                         "hit_rate_few_partners": float(np.mean(np.asarray(hits)[few])) if few.any() else None}
    for settings in grid:
        started = time.perf_counter()
        hits, reached, bought = [], set(), []
        for seed, rest in pairs:
            answer = bought_together(session, model, seed, K, settings)
            top = {h.id for h in answer}
            reached.update(top)
            bought.append(sum(h.source == "co-purchase" for h in answer))
            hits.append(len(rest & top) / len(rest))
        out[label(settings)] = {"hit_rate": float(np.mean(hits)), "items_reached": len(reached) / len(session.products),
                                "hit_rate_few_partners": float(np.mean(np.asarray(hits)[few])) if few.any() else None,
                                "co_purchase_hits_per_answer": float(np.mean(bought)),
                                "ms_per_answer": 1000 * (time.perf_counter() - started) / len(pairs)}
        print(f"  {label(settings):45s} hit rate@{K} {out[label(settings)]['hit_rate']:.4f}  "
              f"reached {out[label(settings)]['items_reached']:.3f}  seeds with < {K} partners "
              f"{out[label(settings)]['hit_rate_few_partners'] or 0:.4f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep", action="store_true", help="keep each window's index")
    parser.add_argument("--session-rule", action="store_true",
                        help="instead: feed no basket ids (baskets = a shopper's purchases on one UTC day) and score "
                             "the default settings on both windows")
    args = parser.parse_args()
    log, catalog = purchases()
    base = base_index(args.out, catalog)
    end = log.t.max()
    if args.session_rule:
        session_rule(args, base, log, end)
        return
    results: dict = {"grid": [asdict(s) for s in GRID], "pairs": PAIRS, "k": K}
    cuts = {w: end - pd.Timedelta(days=WINDOW_DAYS * (w + 1)) for w in (1, 0)}
    print(f"validation window 1 (after {cuts[1].date()})", flush=True)
    index = window_index(args.out, base, log, cuts[1], "bought-together-1")
    val = score(index, log, cuts[1], GRID)
    if not args.keep:
        shutil.rmtree(index)
    chosen = max(GRID, key=lambda s: val[label(s)]["hit_rate"])
    print(f"test window 0 (after {cuts[0].date()}), chosen: {label(chosen)}", flush=True)
    index = window_index(args.out, base, log, cuts[0], "bought-together-0")
    others = [BoughtTogetherConfig(scoring=chosen.scoring, min_shoppers=m, fill=chosen.fill) for m in (1, 2)]
    others.append(BoughtTogetherConfig(scoring=chosen.scoring, min_shoppers=chosen.min_shoppers, fill=not chosen.fill))
    test = score(index, log, cuts[0], [chosen] + [s for s in others if s != chosen])  # the others: for their cost only
    if not args.keep:
        shutil.rmtree(index)
    few = lambda v: "-" if v.get("hit_rate_few_partners") is None else f"{v['hit_rate_few_partners']:.4f}"  # noqa: E731
    rows = [[name + (" (chosen)" if name == label(chosen) else ""), f"{v['hit_rate']:.4f}", f"{v['items_reached']:.3f}",
             few(v), f"{test[name]['hit_rate']:.4f}" if name in test else "-",
             f"{test[name]['items_reached']:.3f}" if name in test else "-", few(test[name]) if name in test else "-"]
            for name, v in val.items() if isinstance(v, dict)]
    print(markdown_table(["Online Retail bought together", "val hit rate@10", "val reached", "val, seeds < 10 partners",
                          "test hit rate@10", "test reached", "test, seeds < 10 partners"], rows))
    print(f"seeds with < 10 partners: val {val['seeds_with_fewer_than_10_partners']}, "
          f"test {test['seeds_with_fewer_than_10_partners']} of {PAIRS}")
    results.update({"chosen": asdict(chosen), "validation": val, "test": test,
                    "cuts": {str(w): str(c) for w, c in cuts.items()}})
    path = args.out / "bought-together.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")


def session_rule(args: argparse.Namespace, base: Path, log: pd.DataFrame, end: pd.Timestamp) -> None:
    """The fallback without basket ids, reported beside the invoice baskets (nothing is chosen here)."""
    results = {}
    for w in (1, 0):
        cut = end - pd.Timedelta(days=WINDOW_DAYS * (w + 1))
        print(f"window {w} (after {cut.date()}), baskets by the session rule", flush=True)
        index = window_index(args.out, base, log, cut, f"bought-together-sessions-{w}", baskets=False)
        results[str(w)] = score(index, log, cut, [BoughtTogetherConfig()])
        if not args.keep:
            shutil.rmtree(index)
    path = args.out / "bought-together-sessions.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
