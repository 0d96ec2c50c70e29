"""Offline relevance evaluation of an index: text (judged queries), image (shared labels), cross-modal.

Every evaluation ranks products for a set of queries with one or more methods, scores each query on
the same metrics and keeps the per-query rows, so a report can show averages, curves and the worst
queries. Metrics: nDCG@k (graded gain), recall@k, recall@100, MRR@k, precision@k and mAP@k; the
binary metrics count a judged product as relevant when its relevance is at least `min_relevance`.
"""

from __future__ import annotations

import csv
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from vitrina.encoders.text_training import read_training_record
from vitrina.engine.data.catalog import join_text, metadata_key
from vitrina.engine.errors import QueryError
from vitrina.engine.evaluate.relevance import (
    average_precision_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
)
from vitrina.engine.learn.colour_vectors import image_head_inputs
from vitrina.engine.learn.fusion import FUSED_SPACE, SHARED_IMAGE_SPACE
from vitrina.engine.query.search import SearchSession, check_k, clean_query, ties_by_row
from vitrina.engine.data.splits import heldout_bucket
from vitrina.index import IndexConfig, ProductIndex
from vitrina.errors import Param

TEXT_METHODS = ("lexical", "dense", "hybrid")
METHOD_LABELS = {"lexical": "BM25 (lexical)", "dense": "dense", "hybrid": "hybrid", "dense-exact": "dense, exact search",
                 "fused": "fused (product vector)", "image->fused": "image -> fused"}
DEPTH = 100  # every method ranks this many products per query (recall@100, curves)
QUERY_BATCH = 1024


@dataclass(frozen=True)
class Qrels:
    """Judged queries: query_id -> query text, and query_id -> {product_id: relevance}."""

    source: Path
    queries: dict[str, str]
    judgements: dict[str, dict[str, float]]

    def subset(self, query_ids: Sequence[str]) -> "Qrels":
        return Qrels(self.source, {q: self.queries[q] for q in query_ids},
                     {q: self.judgements[q] for q in query_ids})


def read_qrels(path: str | Path) -> Qrels:
    """Read query_id,query,product_id,relevance rows; errors name the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise QueryError(f"qrels file not found: {path}")
    queries: dict[str, str] = {}
    judgements: dict[str, dict[str, float]] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        have = reader.fieldnames or []
        for column in ("query_id", "query", "product_id", "relevance"):
            if column not in have:
                raise QueryError(f"{path}: missing column {column!r} (columns: {', '.join(have) or 'none'})")
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            qid, query, pid = (str(row.get(c) or "").strip() for c in ("query_id", "query", "product_id"))
            for name, value in (("query_id", qid), ("query", query), ("product_id", pid)):
                if not value:
                    raise QueryError(f"{where}: field {name!r} is empty")
            try:
                relevance = float(row.get("relevance") or "")
            except ValueError:
                raise QueryError(f"{where}: field 'relevance' is {row.get('relevance')!r}, not a number") from None
            if not np.isfinite(relevance) or relevance < 0:
                raise QueryError(f"{where}: field 'relevance' must be a finite number >= 0, got {relevance}")
            if queries.setdefault(qid, query) != query:
                raise QueryError(f"{where}: query_id {qid!r} appears with two different queries")
            judged = judgements.setdefault(qid, {})
            if pid in judged and judged[pid] != relevance:
                raise QueryError(f"{where}: product {pid!r} is judged twice for query {qid!r} with different relevance")
            judged[pid] = relevance
    if not queries:
        raise QueryError(f"{path}: no judged queries")
    return Qrels(path, queries, judgements)


def metric_names(k: int, extra_recall_at_1: bool = False) -> list[str]:
    names = [f"ndcg@{k}", f"recall@{k}", f"recall@{DEPTH}", f"mrr@{k}", f"precision@{k}", f"map@{k}"]
    return (["recall@1"] if extra_recall_at_1 else []) + names


def is_relevant(grade: float, min_relevance: float) -> bool:
    """Whether a judged grade counts as relevant for the binary metrics (never a grade of 0)."""
    return grade > 0 and grade >= min_relevance


def score_query(ranked: Sequence[str], relevance: dict[str, float], k: int, min_relevance: float,
                names: Sequence[str]) -> dict[str, float]:
    """Every metric in `names` for one ranked list against one query's graded judgements."""
    relevant = {pid for pid, grade in relevance.items() if is_relevant(grade, min_relevance)}
    values = {
        f"ndcg@{k}": ndcg_at_k(ranked, relevance, k),
        f"recall@{k}": recall_at_k(ranked, relevant, k),
        f"recall@{DEPTH}": recall_at_k(ranked, relevant, DEPTH),
        f"mrr@{k}": reciprocal_rank_at_k(ranked, relevant, k),
        f"precision@{k}": precision_at_k(ranked, relevant, k),
        f"map@{k}": average_precision_at_k(ranked, relevant, k),
        "recall@1": recall_at_k(ranked, relevant, 1),
    }
    return {name: values[name] for name in names}


@dataclass
class MethodResult:
    """One retrieval method over every query: its rankings and its per-query metric rows."""

    name: str
    rankings: dict[str, list[str]]  # query_id -> product ids, best first (DEPTH deep)
    per_query: dict[str, dict[str, float]]  # query_id -> metric -> value
    seconds: float

    @property
    def label(self) -> str:
        return METHOD_LABELS.get(self.name, self.name)

    def mean(self, metric: str) -> float:
        return float(np.mean([row[metric] for row in self.per_query.values()])) if self.per_query else 0.0

    def summary(self, names: Sequence[str]) -> dict[str, float]:
        return {name: round(self.mean(name), 6) for name in names}


@dataclass
class Evaluation:
    """The outcome of one `vitrina eval` run, ready to print, dump as JSON or turn into a report."""

    kind: str  # "text", "image" or "cross-modal"
    index: Path
    k: int
    min_relevance: float
    metrics: list[str]
    queries: dict[str, str]  # query_id -> what was asked (text, or a product id)
    judgements: dict[str, dict[str, float]]  # query_id -> {product_id: relevance}
    methods: list[MethodResult]
    notes: list[str] = field(default_factory=list)
    queries_are_products: bool = False  # image eval: a query product never counts as its own hit

    def relevant(self, query_id: str) -> set[str]:
        """The products that count as relevant for the binary metrics."""
        out = {p for p, g in self.judgements[query_id].items() if is_relevant(g, self.min_relevance)}
        if self.queries_are_products:
            out.discard(query_id)
        return out

    def recall_curve(self, method: str, ks: Sequence[int]) -> list[float]:
        """Mean recall@k of a method for each k in `ks` (for plots)."""
        result = self.method(method)
        found = np.zeros(len(ks))
        for qid, ranked in result.rankings.items():
            relevant = self.relevant(qid)
            if not relevant:
                continue
            first = {}
            for rank, pid in enumerate(ranked, start=1):
                first.setdefault(pid, rank)
            ranks = np.array([first[p] for p in relevant if p in first])
            found += np.array([(ranks <= k).sum() for k in ks]) / len(relevant)
        return list(found / max(1, len(result.rankings)))

    def method(self, name: str) -> MethodResult:
        for result in self.methods:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "index": str(self.index),
            "k": self.k,
            "queries": len(self.queries),
            "min_relevance": self.min_relevance,
            "methods": {m.name: {**m.summary(self.metrics), "seconds": round(m.seconds, 3)} for m in self.methods},
            "notes": self.notes,
        }

    def write_per_query(self, path: str | Path) -> None:
        """One CSV row per (query, method) with every metric."""
        with Path(path).open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["query_id", "query", "method", *self.metrics])
            for method in self.methods:
                for qid, row in method.per_query.items():
                    writer.writerow([qid, self.queries[qid], method.name, *(f"{row[m]:.6f}" for m in self.metrics)])


def _rank_all(name: str, query_ids: Sequence[str], retrieve: Callable[[list[int]], tuple[np.ndarray, np.ndarray]],
              ids: Sequence[str], progress: bool, exclude: dict[str, int] | None = None) -> tuple[dict, float]:
    """Run `retrieve` over query positions in batches; product rows become ids (minus excluded rows)."""
    rankings: dict[str, list[str]] = {}
    started = time.perf_counter()
    positions = list(range(len(query_ids)))
    with tqdm(total=len(positions), desc=name, unit="query", disable=not progress, leave=False) as bar:
        for start in range(0, len(positions), QUERY_BATCH):
            batch = positions[start : start + QUERY_BATCH]
            _, rows = retrieve(batch)
            for pos, ranked_rows in zip(batch, rows):
                qid = query_ids[pos]
                skip = exclude.get(qid, -1) if exclude else -1
                rankings[qid] = [ids[r] for r in ranked_rows if r >= 0 and r != skip][:DEPTH]
            bar.update(len(batch))
    return rankings, time.perf_counter() - started


def _method(name, query_ids, retrieve, ids, judgements, k, min_relevance, names, progress, exclude=None):
    rankings, seconds = _rank_all(name, query_ids, retrieve, ids, progress, exclude)
    per_query = {}
    for q in query_ids:
        relevance = judgements[q]
        if exclude and q in relevance:  # the query product itself is neither retrieved nor counted
            relevance = {p: g for p, g in relevance.items() if p != q}
        per_query[q] = score_query(rankings[q], relevance, k, min_relevance, names)
    return MethodResult(name, rankings, per_query, seconds)


def trained_query_ids(session: SearchSession) -> set[str]:
    """Query ids the index's text model was fine-tuned or tuned on (empty for models not trained by Vitrina)."""
    info = session.manifest.spaces.get("text")
    record = read_training_record(info.model) if info and Path(info.model).is_dir() else None
    return set(record.get("train_query_ids", [])) if record else set()


def evaluate_text(
    session: SearchSession,
    qrels: Qrels,
    k: int = 10,
    min_relevance: float = 0.0,
    methods: Sequence[str] = TEXT_METHODS,
    include_trained: bool = False,
    exact: bool = False,
    progress: bool = True,
    space: str | None = None,
) -> Evaluation:
    """BM25, dense and hybrid side by side on judged queries (methods the index can't run are skipped).

    space: the vectors dense and hybrid search ("text" or "fused"; default: what `search` uses).

    Queries the index's text model was trained on are left out unless `include_trained`: a figure
    on training queries says nothing about the shop's next query.
    """
    check_k(k)
    space = space or session.default_space()
    if space not in ("text", "fused"):
        raise QueryError(f"text evaluation searches the text or fused vectors, not {space!r}")
    notes: list[str] = [] if space == "text" else [f"dense and hybrid search the {space} vectors"]
    trained = set() if include_trained else trained_query_ids(session) & set(qrels.queries)
    if trained:
        qrels = qrels.subset([q for q in qrels.queries if q not in trained])
        notes.append(f"{len(trained)} queries the text model was trained on were left out (--include-trained keeps them)")
        if not qrels.queries:
            raise QueryError("every query in the qrels was used to train the text model; evaluate on other queries")
    unknown = {p for judged in qrels.judgements.values() for p in judged if p not in session.products}
    if unknown:
        notes.append(f"{len(unknown)} judged product ids are not in the index (they count as never retrieved)")
    if session.directory.lexical is None:
        if "dense" not in methods:
            raise QueryError("this index has no lexical (BM25) index; evaluate {methods}, or re-index",
                             methods=Param("methods", "dense"))
        methods = ["dense"]
        notes.append("the index has no lexical index, so only dense retrieval was evaluated")
    query_ids = list(qrels.queries)
    texts = [qrels.queries[q] for q in query_ids]
    no_relevant = sum(1 for q in query_ids if not any(is_relevant(g, min_relevance) for g in qrels.judgements[q].values()))
    if no_relevant:
        notes.append(f"{no_relevant} queries have no product judged relevant (>= {min_relevance:g}); they score 0 "
                     "on recall, MRR, precision and mAP")
    names = metric_names(k)
    ids = session.products.ids
    results = []
    vectors = None
    if "dense" in methods or "hybrid" in methods or exact:  # encode once, reuse in every dense method
        started = time.perf_counter()
        vectors = np.concatenate([session.encode_queries(texts[i : i + QUERY_BATCH], space)
                                  for i in tqdm(range(0, len(texts), QUERY_BATCH), desc="encoding queries",
                                                disable=not progress, leave=False)])
        notes.append(f"encoding the {len(texts)} queries took {time.perf_counter() - started:.1f} s "
                     "(not included in the dense and hybrid seconds)")

    hybrid_vectors = vectors
    if vectors is not None and "hybrid" in methods:  # the dense leg of hybrid reads corrected queries
        changed = [i for i, t in enumerate(texts) if session.dense_text(t, "hybrid") != clean_query(t)]
        if changed:
            hybrid_vectors = vectors.copy()
            hybrid_vectors[changed] = session.encode_queries([session.dense_text(texts[i], "hybrid") for i in changed], space)

    def run(mode: str):
        def retrieve(batch):
            chosen = hybrid_vectors if mode == "hybrid" else vectors
            batch_vectors = None if chosen is None or mode == "lexical" else chosen[batch]
            return session.retrieve([texts[i] for i in batch], DEPTH, space, mode, batch_vectors)

        return retrieve

    for mode in methods:
        results.append(_method(mode, query_ids, run(mode), ids, qrels.judgements, k, min_relevance, names, progress))
    if exact:
        stored = session.directory.spaces["text" if space == "text" else FUSED_SPACE]
        flat = exact_index(np.asarray(stored.vectors), stored.rows)

        def exact_search(batch):
            return ties_by_row(*flat.search(vectors[batch], DEPTH))  # equal scores by row, as search ranks them

        results.append(_method("dense-exact", query_ids, exact_search, ids, qrels.judgements, k, min_relevance,
                               names, progress))
    return Evaluation("text", session.path, k, min_relevance, names, dict(qrels.queries), qrels.judgements,
                      results, notes)


def exact_index(vectors: np.ndarray, rows: np.ndarray) -> ProductIndex:
    """Brute-force inner-product search over stored vectors: the reference an ANN index is measured against."""
    return ProductIndex.build(vectors, rows, "Flat", IndexConfig(use_gpu=False))


def _sample(rows: list[int], limit: int | None, seed: int) -> list[int]:
    if limit is None or limit >= len(rows):
        return rows
    if limit < 1:
        raise QueryError("{queries} must be at least 1, got {limit}", queries=Param("queries"), limit=limit)
    return sorted(random.Random(seed).sample(rows, limit))


def evaluate_image(
    session: SearchSession,
    label_field: str,
    k: int = 10,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = True,
    space: str = "image",
) -> Evaluation:
    """Each product image queries the image vectors (itself excluded); a hit is relevant when it has
    the query's value of `label_field`.

    space "fused" ranks the fused vectors twice: queried by each product's own fused vector
    ("fused"), and by its image alone projected into the shared space ("image->fused", as an
    uploaded photo would be).
    """
    check_k(k)
    if space not in ("image", "fused"):
        raise QueryError(f"image evaluation searches the image or fused vectors, not {space!r}")
    if space == "fused" and session.fusion is None:
        raise QueryError(f"{session.path} has no fused vectors yet; run `vitrina train` first")
    space_name = space
    space = session.directory.spaces.get("image")
    if space is None:
        raise QueryError("this index has no image vectors; index a catalog with images to evaluate image search")
    column_names = session.products.table.column_names
    if label_field not in column_names:
        raise QueryError("{param} {label!r} is not a catalog field of this index (fields: {fields})",
                         param=Param("label_field"), label=label_field,
                         fields=", ".join(c for c in column_names if c != "id"))
    labels = session.products.table.column(label_field).to_pylist()
    ids = session.products.ids
    with_image = [r for r in dict.fromkeys(int(r) for r in space.rows) if labels[r] not in (None, "")]  # once each
    by_label: dict[object, list[int]] = {}
    for row in with_image:
        by_label.setdefault(labels[row], []).append(row)
    chosen = _sample(with_image, limit, seed)
    if not chosen:
        raise QueryError(f"no product has both an image vector and a {label_field!r} value")
    query_ids = [ids[r] for r in chosen]
    members = {label: {ids[o]: 1.0 for o in rows} for label, rows in by_label.items()}  # shared, not copied
    judgements = {ids[r]: members[labels[r]] for r in chosen}  # each includes the query: excluded when scored
    names = metric_names(k)

    def searcher(target, query_vectors):
        def retrieve(batch):
            return target.search(query_vectors(batch), DEPTH + 1)  # several images per product: max-pooled
        return retrieve

    def stored(source):
        return lambda batch: np.stack([source.vector_of_row(chosen[i]) for i in batch])

    exclude = {ids[r]: r for r in chosen}
    if space_name == "image":
        runs = [("dense", searcher(space, stored(space)))]
    else:
        fused = session.directory.spaces[FUSED_SPACE]
        def projected(batch):  # the stored photos as the image head takes them (with their colour descriptors)
            inputs = image_head_inputs(session.directory, session.fusion.colour, stored(space)(batch),
                                       np.asarray([chosen[i] for i in batch], dtype=np.int64), session.fusion.captions)
            if inputs is None:
                raise QueryError("the shared-space heads were trained with colour descriptors this index does not "
                                 "store; run `vitrina reindex` and `vitrina train` again")
            return session.fusion.fused_query("image", inputs)
        runs = [("fused", searcher(fused, stored(fused))), ("image->fused", searcher(fused, projected))]
    results = [_method(name, query_ids, retrieve, ids, judgements, k, 1.0, names, progress, exclude)
               for name, retrieve in runs]
    notes = [f"relevant: same {label_field!r} as the query product; {len(by_label)} distinct values"]
    return Evaluation("image", session.path, k, 1.0, names, {q: q for q in query_ids}, judgements, results, notes,
                      queries_are_products=True)


def product_texts(session: SearchSession) -> list[str]:
    """Each product's text as indexed: its catalog text fields joined, in manifest order."""
    table = session.products.table
    keys = [metadata_key(f) for f in session.manifest.catalog.get("text_fields") or []]
    columns = [table.column(key).to_pylist() for key in keys if key in table.column_names]
    return [join_text(values) for values in zip(*columns)] if columns else [""] * len(session.products)


def evaluate_cross_modal(
    session: SearchSession, k: int = 10, limit: int | None = None, seed: int = 0, progress: bool = True
) -> Evaluation:
    """Each product's text queries the image vectors; the product's own image is the one relevant item.

    A trained index searches its images in the shared space, and only products held out of training
    (`vitrina train --heldout`) are asked, when there are any; otherwise a CLIP text tower searches the
    image vectors.
    """
    check_k(k)
    if session.directory.spaces.get("image") is None:
        raise QueryError("this index has no image vectors; cross-modal evaluation needs them")
    texts = product_texts(session)
    ids = session.products.ids
    notes = []
    heldout = session.fusion.heldout_share if session.fusion is not None else 0.0
    if session.fusion is not None:
        space = session.directory.spaces[SHARED_IMAGE_SPACE]
        encode = lambda batch: session.encode_queries(batch, "image")  # noqa: E731 (text head -> shared-image)
        what = f"text queries projected by the shared-space text head ({session.fusion.name})"
        if heldout:
            notes.append(f"queries: only products held out of `vitrina train` (bucket < {heldout:g})")
    else:
        space = session.directory.spaces["image"]
        encoder = session.encoder("text->image")
        encode, what = encoder.encode, f"text queries encoded by {encoder.name}"
    candidates = [r for r in dict.fromkeys(int(r) for r in space.rows)  # a product once, however many images
                  if texts[r].strip() and (not heldout or heldout_bucket(ids[r]) < heldout)]
    chosen = _sample(candidates, limit, seed)
    if not chosen:
        raise QueryError("no product has both text and an image vector")
    query_ids = [ids[r] for r in chosen]
    judgements = {ids[r]: {ids[r]: 1.0} for r in chosen}
    names = metric_names(k, extra_recall_at_1=True)

    def retrieve(batch):
        return space.search(encode([texts[chosen[i]] for i in batch]), DEPTH)  # several images: each product's best

    result = _method("dense", query_ids, retrieve, ids, judgements, k, 1.0, names, progress)
    notes.insert(0, f"{what} against {len(space.rows)} image vectors")
    return Evaluation("cross-modal", session.path, k, 1.0, names, {q: texts[r] for q, r in zip(query_ids, chosen)},
                      judgements, [result], notes)
