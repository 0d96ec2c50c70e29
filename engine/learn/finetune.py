"""`vitrina train-text`: fine-tune an index's text encoder on the shop's judged queries, then re-embed.

Queries are split by a hash of their id, so the split is the same on every run and machine: the
held-out share is never trained on and is what `vitrina eval text` scores afterwards (the trained
query ids are recorded in the model directory, and `eval text` leaves them out).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from vitrina.encoders import load_text_encoder
from vitrina.encoders.text import TransformersTextEncoder
from vitrina.encoders.text_training import (
    TrainingConfig,
    TrainingExample,
    TrainingReport,
    check_model_out,
    finetune_text_encoder,
    save_text_model,
)
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.errors import QueryError
from vitrina.engine.evaluate.evaluation import Qrels, product_texts, read_qrels
from vitrina.engine.build.assemble import build_space
from vitrina.engine.build.encode import encode_texts
from vitrina.engine.query.search import SearchSession
from vitrina.engine.data.splits import heldout_bucket
from vitrina.index import IndexDirectory
from vitrina.errors import Param

MINING_DEPTH = 20  # hard negatives come from each query's top results that the shop did not judge


def split_queries(qrels: Qrels, heldout: float) -> tuple[list[str], list[str]]:
    """(training ids, held-out ids) by `heldout_bucket`."""
    if not 0.0 < heldout < 1.0:
        raise QueryError("{heldout} must be between 0 and 1 (exclusive), got {value}", heldout=Param("heldout"), value=heldout)
    train = [q for q in qrels.queries if heldout_bucket(q) >= heldout]
    held = [q for q in qrels.queries if heldout_bucket(q) < heldout]
    return train, held


@dataclass
class TrainTextResult:
    model_dir: Path
    train_queries: int
    heldout_queries: int
    examples: int
    training: TrainingReport
    seconds: dict[str, float] = field(default_factory=dict)


def training_examples(session: SearchSession, qrels: Qrels, query_ids: list[str], min_positive: float,
                      texts: list[str]) -> list[TrainingExample]:
    """Positives: judged products with relevance >= min_positive. Hard negatives: unjudged products
    among the query's top MINING_DEPTH results by the index's best mode."""
    products = session.products
    queries = [qrels.queries[q] for q in query_ids]
    _, rows = session.retrieve(queries, MINING_DEPTH)
    examples = []
    for qid, query, top in zip(query_ids, queries, rows):
        judged = qrels.judgements[qid]
        positives = tuple(texts[products.row_of(p)] for p, g in judged.items() if g >= min_positive and p in products)
        negatives = tuple(texts[r] for r in top if r >= 0 and products.ids[r] not in judged)
        if positives:
            examples.append(TrainingExample(query, positives, negatives))
    return examples


def train_text(
    index_dir: str | Path,
    qrels_path: str | Path,
    config: VitrinaConfig,
    training: TrainingConfig = TrainingConfig(),
    model_out: str | Path | None = None,
    heldout: float = 0.3,
    min_positive: float = 2.0,
) -> TrainTextResult:
    """Fine-tune the text model of `index_dir`, save it to `model_out`, re-embed the index's text space."""
    index_dir = Path(index_dir)
    timings: dict[str, float] = {}
    torch_config = replace(config, encoders=replace(config.encoders, backend="torch"))  # training needs autograd
    session = SearchSession(index_dir, torch_config)
    qrels = read_qrels(qrels_path)
    train_ids, held_ids = split_queries(qrels, heldout)
    if len(train_ids) < 2:
        raise QueryError("{path}: only {count} training queries after holding out {share:.0%}; give more judged "
                         "queries or a smaller {heldout}", path=qrels_path, count=len(train_ids), share=heldout,
                         heldout=Param("heldout"))
    encoder = session.encoder("text")
    if not isinstance(encoder, TransformersTextEncoder):
        raise QueryError(f"train-text fine-tunes BERT-family text models; this index's text model is {encoder.name}")
    model_out = check_model_out(Path(model_out) if model_out else index_dir.parent / f"{index_dir.name}.text-model")

    t0 = time.perf_counter()
    texts = product_texts(session)
    examples = training_examples(session, qrels, train_ids, min_positive, texts)
    timings["mining"] = time.perf_counter() - t0
    if len(examples) < 2:
        raise QueryError("{path}: fewer than 2 training queries have a product judged >= {grade} that is in the "
                         "index; lower {min_positive} or check the product ids", path=qrels_path, grade=min_positive,
                         min_positive=Param("min_positive"))

    report = finetune_text_encoder(encoder, examples, training, progress=config.progress)
    timings["training"] = report.seconds
    record = {
        "base_model": session.manifest.space("text").model,
        "qrels": str(Path(qrels_path).resolve()),
        "heldout": heldout,
        "min_positive": min_positive,
        "training": asdict(training),
        "epoch_losses": report.epochs,
        "train_query_ids": sorted(train_ids),
    }
    save_text_model(encoder, model_out, record)

    t0 = time.perf_counter()
    trained = load_text_encoder(str(model_out.resolve()), config.encoders.for_catalog())  # the configured backend
    vectors = encode_texts(trained, texts, config.progress)
    old = session.directory
    factory = config.index.factory or old.manifest.space("text").factory  # keep the index type it had
    same_index = replace(config, index=replace(config.index, factory=factory))
    rows = np.asarray(old.spaces["text"].rows)
    info, space = build_space(trained, str(model_out.resolve()), vectors, rows, same_index)
    old.manifest.spaces["text"] = info
    kept = {role: path for role, path in old.encoder_dirs.items() if role != "text"}  # the old text model is stale
    if getattr(trained, "model_dir", None):
        kept["text"] = trained.model_dir
    IndexDirectory(old.manifest, old.products, {**old.spaces, "text": space}, old.lexical, kept,
                   settings=old.settings, groups=old.groups).save(index_dir)  # the shop's synonyms, rules and groups
    timings["reindex"] = time.perf_counter() - t0
    return TrainTextResult(model_out, len(train_ids), len(held_ids), len(examples), report, timings)
