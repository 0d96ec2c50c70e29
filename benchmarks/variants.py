"""Variants and near-duplicates: the duplicate threshold, one hit per group on H&M, and Home Depot unchanged.

Three measurements (subcommands):

  threshold  The image cosine from which two equal-titled products are duplicates (`--collapse-duplicates`).
             Image vectors of the default image model (efficientnet-lite0) for pairs of products:
               re-upload (bytes)    fashion/ products with equal normalised titles and byte-identical photos
               re-upload (re-saved) a fashion/ photo against itself shrunk to 90% and saved as JPEG q70
               colour variant       H&M articles of one product_code in different colours
               same title, diff.    fashion/ products with equal normalised titles and different photos
               different product    random pairs of fashion/ products
             and the share of each kind at or above candidate thresholds.
  hm         H&M articles indexed with `product_code` as the group field (text and images, or --text-only)
             and without grouping; 30 natural queries: distinct product codes in every top 10, and the
             slots spent on another colour of a product already shown.
  hd         Home Depot dev queries against titles: nDCG@10 and recall@100 (relevance >= 2.5) of hybrid
             search without grouping and with --collapse-duplicates (text only: equal normalised titles),
             on a sample of queries.

    .venv/bin/python benchmarks/variants.py threshold
    .venv/bin/python benchmarks/variants.py hm [--text-only]
    .venv/bin/python benchmarks/variants.py hd --queries 500
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchutil import DATA, DATA_IMAGES, DEFAULT_OUT, markdown_table

FASHION = DATA / "fashion"
HM = DATA / "hm"
HD = DATA / "homedepot"
THRESHOLDS = (0.90, 0.93, 0.95, 0.96, 0.97, 0.98, 0.99)

HM_QUERIES = (
    "knitted cardigan", "black skinny jeans", "denim jacket", "floral summer dress", "striped t-shirt",
    "hooded sweatshirt", "wool coat", "leather boots", "swimsuit", "bikini top", "high waist trousers",
    "oversized shirt", "ribbed jumper", "pyjamas", "lace bra", "sports tights", "baby bodysuit",
    "kids dungarees", "puffer jacket", "linen shorts", "wrap dress", "blazer", "pleated skirt",
    "socks", "sunglasses", "crossbody bag", "knitted hat", "slip dress", "chinos slim fit", "cotton joggers",
)


# --- threshold -----------------------------------------------------------------------------------------------

def _image_encoder():
    from vitrina.encoders import DEFAULT_IMAGE_MODEL, EncoderConfig, load_image_encoder

    return load_image_encoder(DEFAULT_IMAGE_MODEL, EncoderConfig(threads=1))


def _encode(encoder, images: list, batch: int = 64) -> np.ndarray:
    parts = [encoder.encode(images[i:i + batch]) for i in range(0, len(images), batch)]
    return np.concatenate(parts).astype(np.float32)


def _load(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def _resaved(image):
    """The photo shrunk to 90% and saved as JPEG quality 70: a re-upload that is not the same bytes."""
    from PIL import Image

    small = image.resize((max(1, int(image.width * 0.9)), max(1, int(image.height * 0.9))), Image.BICUBIC)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=70)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def measure_threshold(args: argparse.Namespace) -> dict:
    from vitrina.engine.build.groups import normalised_title

    rng = random.Random(args.seed)
    fashion = list(csv.DictReader((FASHION / "products.csv").open(newline="", encoding="utf-8")))
    by_title: dict[str, list[dict]] = defaultdict(list)
    for row in fashion:
        by_title[normalised_title(row["title"])].append(row)
    digest = {}
    same_title = [rows for rows in by_title.values() if len(rows) > 1]
    for rows in same_title:
        for row in rows:
            digest[row["id"]] = hashlib.md5((FASHION / row["image"]).read_bytes()).hexdigest()
    bytes_pairs, diff_pairs = [], []
    for rows in same_title:
        for i in range(len(rows)):
            for j in range(i + 1, len(rows)):
                pair = (rows[i]["id"], rows[j]["id"])
                (bytes_pairs if digest[pair[0]] == digest[pair[1]] else diff_pairs).append(pair)
    rng.shuffle(diff_pairs)
    diff_pairs = diff_pairs[: args.pairs]
    random_pairs = []
    while len(random_pairs) < args.pairs:
        a, b = rng.sample(fashion, 2)
        if normalised_title(a["title"]) != normalised_title(b["title"]):
            random_pairs.append((a["id"], b["id"]))
    resave_ids = [row["id"] for row in rng.sample(fashion, args.pairs)]

    hm = list(csv.DictReader((HM / "articles.csv").open(newline="", encoding="utf-8")))
    by_code: dict[str, list[dict]] = defaultdict(list)
    for row in hm:
        by_code[row["product_code"]].append(row)
    colour_pairs = []
    for rows in by_code.values():
        for i in range(len(rows)):
            for j in range(i + 1, len(rows)):
                if rows[i]["colour_group_code"] != rows[j]["colour_group_code"]:
                    colour_pairs.append((rows[i]["article_id"], rows[j]["article_id"]))
    rng.shuffle(colour_pairs)
    colour_pairs = colour_pairs[: args.pairs]

    encoder = _image_encoder()
    started = time.perf_counter()
    fashion_path = {row["id"]: FASHION / row["image"] for row in fashion}
    hm_path = {row["article_id"]: HM / row["image"] for row in hm}
    needed_fashion = sorted({i for pairs in (bytes_pairs, diff_pairs, random_pairs) for p in pairs for i in p} | set(resave_ids))
    needed_hm = sorted({i for p in colour_pairs for i in p})
    vectors = {}
    images = [_load(fashion_path[i]) for i in needed_fashion]
    vectors.update({("f", i): v for i, v in zip(needed_fashion, _encode(encoder, images))})
    resaved = _encode(encoder, [_resaved(images[needed_fashion.index(i)]) for i in resave_ids])
    vectors.update({("r", i): v for i, v in zip(resave_ids, resaved)})
    vectors.update({("h", i): v for i, v in zip(needed_hm, _encode(encoder, [_load(hm_path[i]) for i in needed_hm]))})
    seconds = time.perf_counter() - started

    def cosines(kind_a: str, kind_b: str, pairs) -> np.ndarray:
        return np.array([float(vectors[(kind_a, a)] @ vectors[(kind_b, b)]) for a, b in pairs])

    kinds = {
        "re-upload (bytes)": cosines("f", "f", bytes_pairs),
        "re-upload (re-saved)": cosines("f", "r", [(i, i) for i in resave_ids]),
        "colour variant (H&M)": cosines("h", "h", colour_pairs),
        "same title, different photo": cosines("f", "f", diff_pairs),
        "different product": cosines("f", "f", random_pairs),
    }
    table = []
    for name, values in kinds.items():
        shares = [f"{np.mean(values >= t):.3f}" for t in THRESHOLDS]
        table.append([name, len(values), f"{np.min(values):.3f}", f"{np.percentile(values, 5):.3f}",
                      f"{np.median(values):.3f}", f"{np.percentile(values, 95):.3f}", *shares])
    headers = ["pairs", "n", "min", "p5", "median", "p95", *[f">= {t}" for t in THRESHOLDS]]
    print(markdown_table(headers, table))
    print(f"encoded {len(vectors)} images in {seconds:.0f} s")
    return {"kinds": {k: {"n": len(v), "min": float(v.min()), "median": float(np.median(v)),
                          **{f">={t}": float(np.mean(v >= t)) for t in THRESHOLDS}} for k, v in kinds.items()},
            "seconds": seconds}


# --- H&M: one hit per product --------------------------------------------------------------------------------

HM_TEXT_FIELDS = ("prod_name", "product_type_name", "colour_group_name", "detail_desc")


def _ungrouped(session):
    """The same index read without its groups: the search as it was before grouping."""
    session.__dict__["groups"] = None
    return session


def measure_hm(args: argparse.Namespace) -> dict:
    from vitrina.engine.build.indexing import build_index
    from vitrina.engine.config import VitrinaConfig
    from vitrina.engine.data.catalog import CatalogConfig
    from vitrina.engine.query.search import SearchSession
    from vitrina.engine.query.variants import DEPTHS
    from vitrina.index.manifest import MANIFEST_FILE

    image_model = None if args.text_only else "efficientnet-lite0"
    target = args.index or DEFAULT_OUT / ("hm-grouped-text" if args.text_only else "hm-grouped")
    config = VitrinaConfig(image_model=image_model, progress=False, images=DATA_IMAGES,
                           catalog=CatalogConfig(id_field="article_id", text_fields=HM_TEXT_FIELDS,
                                                 image_field=None if args.text_only else "image",
                                                 group_field="product_code"))
    build_seconds = None
    if not (args.reuse and (target / MANIFEST_FILE).is_file()):
        print(f"indexing {HM / 'articles.csv'} into {target} ...")
        started = time.perf_counter()
        report = build_index(HM / "articles.csv", target, config)
        build_seconds = {k: round(v, 1) for k, v in report.seconds.items()}
        print(f"indexed in {time.perf_counter() - started:.0f} s: {build_seconds}")
    grouped = SearchSession(target, config)
    plain = _ungrouped(SearchSession(target, config))
    code = {pid: grouped.products.metadata(row)["product_code"] for row, pid in enumerate(grouped.products.ids)}
    rows = []
    seconds = {"grouped": 0.0, "ungrouped": 0.0}
    for query in HM_QUERIES:
        answers = {}
        for name, session in (("grouped", grouped), ("ungrouped", plain)):
            started = time.perf_counter()
            answers[name] = session.search([query], 10)[0]
            seconds[name] += time.perf_counter() - started
        distinct = {name: len({code[h.id] for h in hits}) for name, hits in answers.items()}
        top = answers["ungrouped"][0] if answers["ungrouped"] else None
        rows.append({"query": query, "grouped": distinct["grouped"], "ungrouped": distinct["ungrouped"],
                     "hits": len(answers["grouped"]), "variants": sum(len(h.variants) for h in answers["grouped"]),
                     "ungrouped_top": top and grouped.products.metadata(grouped.products.row_of(top.id))["prod_name"]})
    _, first_rows = grouped.retrieve(list(HM_QUERIES), DEPTHS[0])  # what the first retrieval depth holds
    groups_at_first_depth = [len(np.unique(grouped.groups.ids[r[r >= 0]])) for r in first_rows]
    similar = []
    rng = random.Random(args.seed)
    if not args.text_only:
        for pid in rng.sample(list(code), 30):
            hits = grouped.similar_to_product(pid, 10)
            before = plain.similar_to_product(pid, 10)
            similar.append((len({code[h.id] for h in hits}), len({code[h.id] for h in before}),
                            sum(code[h.id] == code[pid] for h in before)))
    table = [[r["query"], r["ungrouped"], r["grouped"], r["variants"]] for r in rows]
    print(markdown_table(["query", "distinct products in top 10, ungrouped", "grouped", "variants listed"], table))
    ungrouped = [r["ungrouped"] for r in rows]
    grouped_counts = [r["grouped"] for r in rows]
    summary = {
        "queries": len(rows), "index": str(target), "images": not args.text_only, "build_seconds": build_seconds,
        "grouped_all_10_distinct": sum(c == 10 for c in grouped_counts),
        "grouped_mean_distinct": float(np.mean(grouped_counts)),
        "ungrouped_all_10_distinct": sum(c == 10 for c in ungrouped),
        "ungrouped_mean_distinct": float(np.mean(ungrouped)),
        "ungrouped_slots_repeating_a_product": float(np.mean([10 - c for c in ungrouped])),
        "ms_per_query": {k: round(1000 * v / len(rows), 1) for k, v in seconds.items()},
        f"fewest_groups_in_the_first_{DEPTHS[0]}_rows": min(groups_at_first_depth),
    }
    if similar:
        summary["similar_by_id"] = {"products": len(similar),
                                    "grouped_mean_distinct": float(np.mean([s[0] for s in similar])),
                                    "ungrouped_mean_distinct": float(np.mean([s[1] for s in similar])),
                                    "ungrouped_mean_own_product_colours": float(np.mean([s[2] for s in similar]))}
    print(json.dumps(summary, indent=2))
    return {"summary": summary, "queries": rows}


# --- Home Depot: grouping does not cost relevance --------------------------------------------------------------

def measure_hd(args: argparse.Namespace) -> dict:
    from vitrina.engine.config import VitrinaConfig
    from vitrina.engine.evaluate.evaluation import read_qrels
    from vitrina.engine.evaluate.relevance import ndcg_at_k, recall_at_k
    from vitrina.engine.query.search import SearchSession

    config = VitrinaConfig(progress=False)
    qrels = read_qrels(HD / "qrels_dev.csv")
    qids = sorted(qrels.queries)
    random.Random(args.seed).shuffle(qids)
    qids = qids[: args.queries]
    sessions = {"grouping off": SearchSession(args.index, config)}
    if not args.off_only:
        from vitrina.engine.build.groups import DUPLICATE_COSINE, Grouping, attach_groups
        from vitrina.engine.query.variants import load_groups

        collapsed = SearchSession(args.index, config)
        # --collapse-duplicates on a text-only catalog: equal normalised titles (the index-time code run on the
        # loaded index, in memory: the 54,667 titles are not encoded again)
        attach_groups(collapsed.directory, Grouping(cosine=DUPLICATE_COSINE, title_field="title"))
        collapsed.__dict__["groups"] = load_groups(collapsed.directory)
        sessions["--collapse-duplicates"] = collapsed
    results, rankings = {}, {}
    for name, session in sessions.items():
        started = time.perf_counter()
        answers = session.search([qrels.queries[q] for q in qids], 100, mode="hybrid")
        seconds = time.perf_counter() - started
        shown = [[h.id for h in hits] for hits in answers]
        covered = [[i for h in hits for i in [h.id, *(getattr(h, "variants", None) or [])]] for hits in answers]  # with the variants
        rankings[name] = [[[h.id, round(h.score, 6)] for h in hits] for hits in answers]
        strong = {q: {p for p, g in qrels.judgements[q].items() if g >= 2.5} for q in qids}
        with_strong = [i for i, q in enumerate(qids) if strong[q]]
        results[name] = {
            "ndcg@10": float(np.mean([ndcg_at_k(r, qrels.judgements[q], 10) for r, q in zip(shown, qids)])),
            "recall@100": float(np.mean([recall_at_k(shown[i], strong[qids[i]], 100) for i in with_strong])),
            "recall@100, variants counted": float(np.mean(
                [len(set(covered[i]) & strong[qids[i]]) / len(strong[qids[i]]) for i in with_strong])),
            "ms_per_query": round(1000 * seconds / len(qids), 1)}
    table = [[name, f"{r['ndcg@10']:.4f}", f"{r['recall@100']:.4f}", f"{r['recall@100, variants counted']:.4f}",
              r["ms_per_query"]] for name, r in results.items()]
    print(markdown_table(["hybrid, Home Depot dev", "nDCG@10", "recall@100 (rel >= 2.5)",
                          "recall@100, a hit's variants counted", "ms/query"], table))
    summary: dict = {"queries": len(qids), **results}
    if not args.off_only:
        groups = sessions["--collapse-duplicates"].groups.ids
        summary.update(products=len(groups), groups=int(groups.max()) + 1, top10_changed=sum(
            [p for p, _ in a[:10]] != [p for p, _ in b[:10]]
            for a, b in zip(rankings["grouping off"], rankings["--collapse-duplicates"])))
    if args.same_as:
        before = json.loads(args.same_as.read_text())["off_rankings"]
        summary["grouping_off_identical_to"] = {"file": str(args.same_as), "identical": before == rankings["grouping off"]}
    print(json.dumps(summary, indent=2))
    return {**summary, "off_rankings": rankings["grouping off"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("threshold")
    p.add_argument("--pairs", type=int, default=400, help="pairs sampled per kind (default 400)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT / "variants-threshold.json")
    p.set_defaults(run=measure_threshold)
    p = sub.add_parser("hm")
    p.add_argument("--text-only", action="store_true", help="index text only (no image encoding)")
    p.add_argument("--index", type=Path, default=None, help="where the grouped H&M index goes (default under out/)")
    p.add_argument("--reuse", action="store_true", help="reuse an index already built there")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT / "variants-hm.json")
    p.set_defaults(run=measure_hm)
    p = sub.add_parser("hd")
    p.add_argument("--index", type=Path, default=Path("/work/main/benchmarks/out/hd-hybrid"),
                   help="a hybrid index of homedepot/products.csv titles (opened read-only)")
    p.add_argument("--queries", type=int, default=500, help="dev queries sampled (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--off-only", action="store_true", help="only search without grouping (runs on older checkouts)")
    p.add_argument("--same-as", type=Path, default=None,
                   help="the JSON of an --off-only run (e.g. by the code before variants): are the rankings identical?")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT / "variants-hd.json")
    p.set_defaults(run=measure_hd)
    args = parser.parse_args()
    result = args.run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
