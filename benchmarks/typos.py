"""Typo tolerance on Home Depot: nDCG@10 of queries spelled right, with one keyboard slip, and corrected.

The typo generator (`keyboard_typo`), seeded and deterministic per query:
  - picks one word of the query made of letters only and at least 4 long (numbers, units and
    SKU-like tokens are left alone, as shoppers rarely mistype them and the corrector never fuzzes them);
    a query without such a word is left out of every figure (so all figures cover the same queries);
  - applies one slip, chosen uniformly among:
      substitution   a letter replaced by a key next to it on a QWERTY keyboard ("jacket" -> "jacjet")
      deletion       a letter dropped ("jacket" -> "jaket")
      transposition  two adjacent, different letters swapped ("jacket" -> "jakcet")
      insertion      a key next to a letter typed beside it ("jacket" -> "jacklet")
  - the random stream is `random.Random(f"{seed}:{query_id}")`, so a query's typo does not depend on
    which other queries are measured (--limit keeps the same typos for the queries it keeps).

Figures (nDCG@10, unjudged products count 0, as `vitrina eval text`):
  clean             the queries as judged, correction on (must not lose against clean, correction off)
  clean, no fix     the queries as judged, correction off (the search before typo tolerance)
  typo, no fix      one slip per query, correction off
  typo, corrected   one slip per query, correction on

Without --index, a BM25 index of homedepot/products.csv titles is built in memory (seconds). With
--index DIR (an index of homedepot/products.csv built by `vitrina index`), --mode picks lexical or
hybrid search through the index. In hybrid, the rows without "dense too" feed the dense leg the query
as typed, the "dense too" rows the corrected query (what `search` does: `SearchSession.dense_text`), and
the "as served" rows run the whole search composition (`SearchSession.search`: the relevance floor, exact
product codes and any stored synonyms and rules too), so an emptied answer scores 0.

    .venv/bin/python benchmarks/typos.py                     # BM25, all dev queries
    .venv/bin/python benchmarks/typos.py --limit 2000 --seed 0
    .venv/bin/python benchmarks/typos.py --index benchmarks/out/hd-hybrid --mode hybrid
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import time
from pathlib import Path
from typing import Callable, Sequence

from benchutil import DATA, DEFAULT_OUT, markdown_table
from vitrina.engine.evaluate.evaluation import read_qrels
from vitrina.engine.evaluate.relevance import ndcg_at_k
from vitrina.index import LexicalIndex

QRELS = DATA / "homedepot" / "qrels_dev.csv"
PRODUCTS = DATA / "homedepot" / "products.csv"
K = 10
KINDS = ("substitution", "deletion", "transposition", "insertion")
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_POS = {ch: (r, c) for r, row in enumerate(_ROWS) for c, ch in enumerate(row)}


def _neighbours(r: int, c: int) -> str:
    """The keys next to row r, column c on a QWERTY keyboard: +-1 in its row, columns c and c+1 in the row
    above and c-1 and c in the row below (each row sits half a key right of the one above)."""
    near = [(r, c - 1), (r, c + 1), (r - 1, c), (r - 1, c + 1), (r + 1, c - 1), (r + 1, c)]
    return "".join(_ROWS[r2][c2] for r2, c2 in near if 0 <= r2 < len(_ROWS) and 0 <= c2 < len(_ROWS[r2]))


NEIGHBOURS = {ch: _neighbours(r, c) for ch, (r, c) in _POS.items()}
_WORD = re.compile(r"[A-Za-z]+")


def keyboard_typo(word: str, rng: random.Random) -> str:
    """`word` with one keyboard slip (see the module docstring); always different from `word`."""
    lower = word.lower()
    for _ in range(20):
        kind = rng.choice(KINDS)
        i = rng.randrange(len(word))
        if kind == "substitution" and lower[i] in NEIGHBOURS:
            out = word[:i] + rng.choice(NEIGHBOURS[lower[i]]) + word[i + 1:]
        elif kind == "deletion":
            out = word[:i] + word[i + 1:]
        elif kind == "transposition" and i + 1 < len(word) and lower[i] != lower[i + 1]:
            out = word[:i] + word[i + 1] + word[i] + word[i + 2:]
        elif kind == "insertion" and lower[i] in NEIGHBOURS:
            extra = rng.choice(NEIGHBOURS[lower[i]])
            out = word[:i + 1] + extra + word[i + 1:] if rng.random() < 0.5 else word[:i] + extra + word[i:]
        else:
            continue
        if out.lower() != lower:
            return out
    return word[:-1]  # a deletion never fails


def typo_query(query: str, query_id: str, seed: int) -> str | None:
    """The query with one slip in one of its letters-only words of 4+ letters, or None where it has none."""
    rng = random.Random(f"{seed}:{query_id}")
    words = [m for m in re.finditer(r"\S+", query) if _WORD.fullmatch(m.group()) and len(m.group()) >= 4]
    if not words:
        return None
    m = rng.choice(words)
    return query[:m.start()] + keyboard_typo(m.group(), rng) + query[m.end():]


def bm25_searcher(products: Path) -> tuple[Callable[[Sequence[str], bool], list[list[str]]], Callable[[str], str | None]]:
    """An in-memory BM25 index of the products' titles: (search(queries, correct) -> ranked ids, correction)."""
    with products.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    ids = [r["product_id"] for r in rows]
    started = time.perf_counter()
    index = LexicalIndex.build([r["title"] for r in rows])
    print(f"BM25 over {len(rows)} titles built in {time.perf_counter() - started:.1f} s; vocabulary {len(index.vocabulary)} words")

    def search(queries: Sequence[str], correct: bool) -> list[list[str]]:
        index.correct_typos = correct
        _, found = index.search(list(queries), K)
        return [[ids[r] for r in row if r >= 0] for row in found]

    def correction(query: str) -> str | None:
        index.correct_typos = True
        c = index.correct(query)
        return None if c is None else c.text

    return search, correction


def session_searcher(path: Path, mode: str) -> tuple[Callable[[Sequence[str], bool], list[list[str]]], Callable[[str], str | None]]:
    from vitrina.engine.config import VitrinaConfig
    from vitrina.engine.query.search import SearchSession

    session = SearchSession(path, VitrinaConfig(progress=False))
    lexical = session.directory.lexical
    if lexical is None or lexical.vocabulary is None:
        raise SystemExit(f"{path} has no lexical vocabulary; re-index it with this Vitrina")

    def search(queries: Sequence[str], correct: bool, dense_corrected: bool = False,
               served: bool = False) -> list[list[str]]:
        lexical.correct_typos = correct
        out = []
        for start in range(0, len(queries), 256):
            batch = list(queries[start:start + 256])
            if served:  # the whole search composition: floor, exact codes, synonyms and rules, as `search` serves
                out += [[h.id for h in hits] for hits in session.search(batch, K, "text", mode)]
                continue
            vectors = None
            if mode == "hybrid":
                dense_text = [(session.corrected_query(q, mode) or q) if dense_corrected else q for q in batch]
                vectors = session.encode_queries(dense_text, "text")
            _, rows = session.retrieve(batch, K, "text", mode, vectors)
            out += [[session.products.ids[r] for r in row if r >= 0] for row in rows]
        return out

    def correction(query: str) -> str | None:
        lexical.correct_typos = True
        return session.corrected_query(query, mode)

    return search, correction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=None, help="an index of homedepot/products.csv (default: BM25 in memory)")
    parser.add_argument("--mode", choices=("lexical", "hybrid"), default="lexical")
    parser.add_argument("--limit", type=int, default=None, help="measure a seeded random sample of this many queries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT / "typos.json")
    args = parser.parse_args()

    qrels = read_qrels(QRELS)
    typos = {qid: typo_query(q, qid, args.seed) for qid, q in qrels.queries.items()}
    qids = sorted(qid for qid, t in typos.items() if t is not None)
    skipped = len(qrels.queries) - len(qids)
    if args.limit is not None and args.limit < len(qids):
        qids = sorted(random.Random(args.seed).sample(qids, args.limit))
    clean = [qrels.queries[q] for q in qids]
    typed = [typos[q] for q in qids]
    print(f"{len(qids)} queries measured ({skipped} of {len(qrels.queries)} have no letters-only word of 4+ letters)")
    for qid in qids[:5]:
        print(f"  {qrels.queries[qid]!r} -> {typos[qid]!r}")

    if args.index is None:
        search, correction = bm25_searcher(PRODUCTS)
        label = "BM25 (in memory)"
    else:
        search, correction = session_searcher(args.index, args.mode)
        label = f"{args.mode} ({args.index})"

    def ndcg(queries: Sequence[str], correct: bool, dense_corrected: bool = False,
             served: bool = False) -> tuple[float, float]:
        started = time.perf_counter()
        if served:
            ranked = search(queries, correct, served=True)
        else:
            ranked = search(queries, correct, dense_corrected) if dense_corrected else search(queries, correct)
        seconds = time.perf_counter() - started
        values = [ndcg_at_k(r, qrels.judgements[q], K) for r, q in zip(ranked, qids)]
        return sum(values) / len(values), seconds

    figures = {
        "clean": ndcg(clean, True),
        "clean, no fix": ndcg(clean, False),
        "typo, no fix": ndcg(typed, False),
        "typo, corrected": ndcg(typed, True),
    }
    if args.mode == "hybrid" and args.index is not None:  # the dense leg fed the corrected query as well
        figures["clean, corrected, dense too"] = ndcg(clean, True, True)
        figures["typo, corrected, dense too"] = ndcg(typed, True, True)
        figures["clean, as served"] = ndcg(clean, True, served=True)  # Index.search / GET /search, relevance floor on
        figures["typo, as served"] = ndcg(typed, True, served=True)
    changed_clean = sum(correction(q) is not None for q in clean)
    fixed = sum(correction(t) is not None for t in typed)
    same = lambda a, b: a.lower().split() == b.lower().split()  # noqa: E731 (the session collapses spaces)
    restored = sum(same(correction(t) or t, c) for t, c in zip(typed, clean))
    base = figures["clean, no fix"][0]
    rows = [[name, f"{value:.4f}", f"{value / base:.3f}", f"{seconds:.1f}"] for name, (value, seconds) in figures.items()]
    print(f"\n{label}, Home Depot dev queries, seed {args.seed}")
    print(markdown_table(["queries", f"nDCG@{K}", "x clean (no fix)", "seconds"], rows))
    print(f"clean queries changed by correction: {changed_clean} of {len(clean)}; typo queries changed: {fixed}, "
          f"restored exactly: {restored} of {len(typed)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "searcher": label, "seed": args.seed, "queries": len(qids), "skipped_no_word": skipped,
        "ndcg@10": {name: value for name, (value, _) in figures.items()},
        "seconds": {name: seconds for name, (_, seconds) in figures.items()},
        "clean_changed": changed_clean, "typo_changed": fixed, "typo_restored": restored,
        "examples": [[qrels.queries[q], typos[q], correction(typos[q])] for q in qids[:20]],
    }, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
