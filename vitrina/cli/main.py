"""The `vitrina` command line. Command names, flags and JSON shapes here are a public contract."""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path
from typing import Sequence

from vitrina.encoders import DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL, EncoderConfig, ImageLoadError
from vitrina.encoders.config import BACKENDS, PRECISIONS
from vitrina.encoders.image_io import load_image
from vitrina.encoders.image_policy import ImageConfig
from vitrina.engine import __version__
from vitrina.engine.data.catalog import CatalogConfig, resolve_image_source
from vitrina.engine.config import RecommendConfig, ShopperConfig, VitrinaConfig
from vitrina.engine.errors import USER_ERRORS, QueryError
from vitrina.engine.data.events import MissingColumnError
from vitrina.engine.build.indexing import build_index
from vitrina.cli.output import console, hits_json, print_json, results_table
from vitrina.engine.build.reindex import ENGINES, ReindexConfig, reindex
from vitrina.engine.query.search import MODES, SPACES, SearchSession
from vitrina.engine.build.updates import delete, upsert
from vitrina.index import IndexConfig, IndexManifest, LexicalConfig
from vitrina.index.versions import is_versioned_root, resolve_index_path

DEFAULT_BACKEND = EncoderConfig().backend


def _config(args: argparse.Namespace) -> VitrinaConfig:
    """One VitrinaConfig from whichever of the shared flags a command has."""
    get = lambda name, default=None: getattr(args, name, default)  # noqa: E731
    text_fields = get("text_fields")
    return VitrinaConfig(
        text_model=get("text_model") or DEFAULT_TEXT_MODEL,
        image_model=get("image_model") or DEFAULT_IMAGE_MODEL,
        catalog=CatalogConfig(
            id_field=get("id_field", "id"),
            text_fields=tuple(f.strip() for f in text_fields.split(",") if f.strip()) if text_fields else None,
            image_field=get("image_field") or "image",
            image_field_required=get("image_field") is not None,
            price_field=get("price_field", "price"),
        ),
        encoders=EncoderConfig(
            backend=get("backend") or DEFAULT_BACKEND, device=get("device"), batch_size=get("batch_size") or 32,
            precision=get("precision") or "auto", threads=get("threads"), offline=get("offline", False),
        ),
        index=IndexConfig(factory=get("index_factory"), lexical=_lexical_settings(args)),
        images=ImageConfig.from_flags(get("image_root") or (), get("allow_url_network") or (),
                                      get("allow_private_urls", False)),
        shoppers=ShopperConfig.with_environment_key(max_age_days=get("events_max_age")),
        progress=not get("quiet", False),
    )


def _lexical_settings(args: argparse.Namespace) -> LexicalConfig | None:
    if getattr(args, "no_lexical", False):
        return None
    stemmer = getattr(args, "stemmer", None) or "english"
    return LexicalConfig(stemmer=None if stemmer.lower() == "none" else stemmer)


def _read_query_file(path: Path, value_column: str) -> list[tuple[str, str]]:
    """(query_id, value) rows of a CSV with columns query_id and `value_column`; repeated ids are merged."""
    if not path.is_file():
        raise QueryError(f"query file not found: {path}")
    out: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("query_id", value_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise QueryError(f"{path}: missing column {missing[0]!r} (columns: {', '.join(reader.fieldnames or [])})")
        for row in reader:
            qid, value = (row.get("query_id") or "").strip(), (row.get(value_column) or "").strip()
            where = f"{path}, line {reader.line_num}"
            if not qid:
                raise QueryError(f"{where}: field 'query_id' is empty")
            if not value:
                raise QueryError(f"{where}: field {value_column!r} is empty")
            if qid in out and out[qid] != value:
                raise QueryError(f"{where}: query_id {qid!r} appears with two different {value_column} values")
            out[qid] = value
    if not out:
        raise QueryError(f"{path}: no queries")
    return list(out.items())


def _k(args: argparse.Namespace, default: int) -> int:
    """-k as given (0 and negatives are rejected later with a clear message), else the mode's default."""
    return default if args.k is None else args.k


def _session(args: argparse.Namespace) -> SearchSession:
    return SearchSession(args.dir, _config(args), text_model=args.text_model, image_model=args.image_model)


def cmd_index(args: argparse.Namespace) -> int:
    config = _config(args)
    heads = None
    if args.fusion_from:  # read before indexing: --out may be the same directory
        from vitrina.engine.learn.fusion import FUSION_DIR, FusionModel

        heads = FusionModel.load(Path(args.fusion_from) / FUSION_DIR)
    report = build_index(args.catalog, args.out, config)
    notes = []
    if heads is not None:
        from vitrina.engine.learn.shared_space import apply_shared_space

        notes = apply_shared_space(Path(args.out), heads, config)
        report.manifest = IndexManifest.load(Path(args.out))
    m = report.manifest
    lines = [f"Indexed {m.product_count} products into {report.out}"]
    for name, info in m.spaces.items():
        lines.append(f"  {name}: {info.count} vectors, {info.dim}-d, {info.factory}, encoder {info.encoder}")
    if report.image_failures:
        first = "; ".join(f"{pid}: {why}" for pid, why in report.image_failures[:5])
        lines.append(
            f"  images failed: {len(report.image_failures)} (indexed by text only). First: {first}"
        )
    lines += [f"  note: {note}" for note in notes]
    print("\n".join(lines))
    return 0


def _reindex_settings(args: argparse.Namespace) -> ReindexConfig:
    get = lambda name, default: getattr(args, name, default)  # noqa: E731
    return ReindexConfig(shard_size=get("shard_size", None), keep=get("keep", 3), engine=get("engine", "local"),
                           target_recall=get("target_recall", 0.95), ray_actors=get("ray_actors", None))


def cmd_reindex(args: argparse.Namespace) -> int:
    report = reindex(args.catalog, args.out, _config(args), _reindex_settings(args), resume=args.resume,
                     retrain=args.retrain)
    if args.json:
        print_json(report.to_json())
        return 0
    lines = [f"Re-indexed {report.products} products into {report.path} (now current in {report.root})",
             f"  shards: {report.shards} ({report.resumed_shards} done before the resume)" if report.resumed_shards
             else f"  shards: {report.shards}"]
    for space in report.encoded:
        lines.append(f"  {space}: {report.encoded[space]} encoded, {report.reused[space]} unchanged and kept")
    for space, tuned in report.tuning.items():
        lines.append(f"  {space} index: {tuned['parameter']}={tuned['value']} for recall@{tuned['k']} {tuned['recall']:.3f}"
                     f" (target {tuned['target']})")
    if report.images_failed:
        first = "; ".join(f"{pid}: {why}" for pid, why in report.failures[:5])
        lines.append(f"  images failed: {report.images_failed} (indexed by text only). First: {first}")
    lines.append("  seconds: " + ", ".join(f"{stage} {s:.1f}" for stage, s in report.seconds.items()))
    if report.removed_versions:
        lines.append(f"  removed old versions: {', '.join(report.removed_versions)}")
    lines += [f"  note: {note}" for note in report.notes]
    print("\n".join(lines))
    return 0


def _print_update(args: argparse.Namespace, report) -> None:
    if args.json:
        print_json(report.to_json())
        return
    lines = [f"{report.root}: now version {report.version} with {report.products} products"]
    lines.append(f"  added {report.added}, updated {report.updated}, unchanged {report.unchanged}, deleted {report.deleted}")
    if report.encoded:
        lines.append("  encoded: " + ", ".join(f"{space} {n}" for space, n in report.encoded.items()))
    if report.not_found:
        lines.append(f"  not in the index (skipped): {len(report.not_found)}, e.g. {', '.join(report.not_found[:5])}")
    if report.images_failed:
        lines.append(f"  images failed: {report.images_failed} (indexed by text only)")
    if report.dropped_spaces:
        lines.append(f"  note: dropped {', '.join(report.dropped_spaces)}; run again with --retrain, or "
                     f"`vitrina train {report.root}`, to make them again")
    lines += [f"  note: {note}" for note in report.notes]
    print("\n".join(lines))


def cmd_upsert(args: argparse.Namespace) -> int:
    _print_update(args, upsert(args.dir, args.catalog, _config(args), _reindex_settings(args), retrain=args.retrain))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    _print_update(args, delete(args.dir, args.ids, _config(args), _reindex_settings(args), retrain=args.retrain))
    return 0


def _emit(args: argparse.Namespace, session: SearchSession, record: dict, title: str, hits: list) -> None:
    """One answer: `record` as a JSON line with --json, else a results table."""
    if args.json:
        print_json(record)
        return
    catalog = session.manifest.catalog
    hide = [catalog.get("image_field") or ""]
    console().print(results_table(title, hits, catalog.get("text_fields", []), hide))


def cmd_search(args: argparse.Namespace) -> int:
    session = _session(args)
    if args.queries:
        if args.user is not None:
            raise QueryError("--user works with one QUERY, not with --queries")
        queries = _read_query_file(Path(args.queries), "query")
        results = session.search([q for _, q in queries], _k(args, 100), space=args.space, mode=args.mode)
        for (qid, query), hits in zip(queries, results):
            _emit(args, session, {"query_id": qid, "results": hits_json(hits)}, f"{qid}: {query}", hits)
        return 0
    if args.query is None:
        raise QueryError("give a QUERY or --queries FILE.csv")
    if args.user is not None:
        from vitrina.engine.learn.feedback import personalised_search

        hits, personal = personalised_search(session, args.query, args.user, _k(args, 10), args.space, args.mode)
        if not personal:
            print(f"vitrina: user {args.user!r} has no behaviour vector; results are not personalised", file=sys.stderr)
        record = {"query": args.query, "user": args.user, "personalised": personal, "results": hits_json(hits)}
        _emit(args, session, record, f"Search: {args.query} (for {args.user})", hits)
        return 0
    hits = session.search([args.query], _k(args, 10), space=args.space, mode=args.mode)[0]
    _emit(args, session, {"query": args.query, "results": hits_json(hits)}, f"Search: {args.query}", hits)
    return 0


def _similar_batch(args: argparse.Namespace, session: SearchSession) -> int:
    path = Path(args.images)
    loaded: list[tuple[str, object]] = []
    for qid, image in _read_query_file(path, "image"):
        try:
            loaded.append((qid, load_image(resolve_image_source(image, path.resolve().parent))))
        except ImageLoadError as exc:
            loaded.append((qid, exc))
    good = [(qid, img) for qid, img in loaded if not isinstance(img, ImageLoadError)]
    answers = session.similar_to_images([img for _, img in good], _k(args, 100), args.space) if good else []
    results = dict(zip([qid for qid, _ in good], answers))
    for qid, img in loaded:
        if isinstance(img, ImageLoadError):
            print(f"vitrina: warning: query {qid}: {img}", file=sys.stderr)
            if args.json:
                print_json({"query_id": qid, "results": [], "error": str(img)})
        else:
            _emit(args, session, {"query_id": qid, "results": hits_json(results[qid])}, qid, results[qid])
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    session = _session(args)
    if args.images:
        return _similar_batch(args, session)
    k = _k(args, 10)
    if args.id is not None:
        hits, query, label = session.similar_to_product(args.id, k, args.space), {"id": args.id}, f"product {args.id}"
    else:
        try:
            image = load_image(resolve_image_source(args.image, Path.cwd()))
        except ImageLoadError as exc:
            raise QueryError(str(exc)) from None
        hits, query, label = session.similar_to_images([image], k, args.space)[0], {"image": args.image}, args.image
    _emit(args, session, {"query": query, "results": hits_json(hits)}, f"Looks like {label}", hits)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    manifest = IndexManifest.load(resolve_index_path(args.dir))
    if args.json:
        print(manifest.to_json())
        return 0
    print(f"Vitrina index {args.dir} (format {manifest.format_version}, built {manifest.created_at})")
    print(f"  products: {manifest.product_count} from {manifest.catalog.get('source')}")
    print(f"  fields: id={manifest.catalog.get('id_field')} text={','.join(manifest.catalog.get('text_fields', []))} "
          f"image={manifest.catalog.get('image_field')}")
    for name, info in manifest.spaces.items():
        print(f"  {name}: {info.count} vectors, {info.dim}-d, index {info.factory}, encoder {info.encoder}")
        print(f"        model spec: {info.model}" + (f"; embedded with {info.runtime}" if info.runtime else ""))
    kept = sorted(p.name for p in (Path(args.dir) / "encoders").glob("*") if p.is_dir() and not p.name.startswith("."))
    if kept:
        print(f"  ONNX encoders kept: {', '.join(kept)}")
    if manifest.images_failed:
        print(f"  images failed at index time: {manifest.images_failed}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from vitrina.cli.demo import run_demo

    run_demo(Path(args.out) if args.out else None, _config(args), rebuild=args.rebuild)
    return 0


def _eval_output(args: argparse.Namespace, session: SearchSession, evaluation) -> int:
    from vitrina.cli.output import evaluation_table

    if args.per_query:
        evaluation.write_per_query(args.per_query)
    if getattr(args, "report", None):
        from vitrina.engine.evaluate.report import write_report

        path = write_report(evaluation, session, args.report)
        print(f"vitrina: report written to {path}", file=sys.stderr)
    if args.json:
        print_json(evaluation.to_json())
    else:
        console().print(evaluation_table(evaluation))
        for note in evaluation.notes:
            print(f"  note: {note}")
    return 0


def cmd_eval_text(args: argparse.Namespace) -> int:
    from vitrina.engine.evaluate.evaluation import TEXT_METHODS, evaluate_text, read_qrels

    session = _session(args)
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else list(TEXT_METHODS)
    bad = [m for m in methods if m not in TEXT_METHODS]
    if bad:
        raise QueryError(f"--methods: unknown method {bad[0]!r}; choose from {', '.join(TEXT_METHODS)}")
    evaluation = evaluate_text(
        session, read_qrels(args.qrels), _k(args, 10), args.min_relevance, methods,
        include_trained=args.include_trained, exact=args.exact, progress=not args.quiet, space=args.space,
    )
    return _eval_output(args, session, evaluation)


def cmd_eval_image(args: argparse.Namespace) -> int:
    from vitrina.engine.evaluate.evaluation import evaluate_image

    session = _session(args)
    evaluation = evaluate_image(session, args.label_field, _k(args, 10), args.queries, args.seed, not args.quiet,
                                args.space)
    return _eval_output(args, session, evaluation)


def cmd_eval_cross_modal(args: argparse.Namespace) -> int:
    from vitrina.engine.evaluate.evaluation import evaluate_cross_modal

    session = _session(args)
    evaluation = evaluate_cross_modal(session, _k(args, 10), args.queries, args.seed, not args.quiet)
    return _eval_output(args, session, evaluation)


def _add_eval_parsers(sub) -> None:
    p = sub.add_parser("eval", help="measure relevance: text (judged queries), image (shared labels), cross-modal")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")

    def common(q: argparse.ArgumentParser, report: bool = True) -> None:
        q.add_argument("dir", metavar="DIR")
        q.add_argument("-k", type=int, default=None, help="metric cutoff (default 10); recall@100 is always reported")
        q.add_argument("--json", action="store_true", help="print the summary as one JSON object")
        if report:
            q.add_argument("--report", metavar="OUT.html", help="write a self-contained HTML report with plots")
        q.add_argument("--per-query", metavar="OUT.csv", help="write one row of metrics per query and method")
        q.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        _add_model_flags(q, search=True)

    q = kinds.add_parser("text", help="BM25, dense and hybrid side by side on judged queries")
    common(q)
    q.add_argument("--qrels", required=True, metavar="FILE.csv", help="columns query_id,query,product_id,relevance")
    q.add_argument("--min-relevance", type=float, default=0.0, metavar="X",
                   help="judged products with relevance >= X count as relevant for recall, MRR, precision "
                        "and mAP (default: any relevance above 0); nDCG uses the grades themselves")
    q.add_argument("--methods", default=None, metavar="A,B", help="subset of lexical,dense,hybrid (default all)")
    q.add_argument("--exact", action="store_true",
                   help="also rank by exact search over the stored vectors, to measure what the ANN index loses")
    q.add_argument("--include-trained", action="store_true",
                   help="also score queries the text model was fine-tuned on (left out by default)")
    q.add_argument("--space", choices=("text", "fused"), default=None,
                   help="vectors of dense and hybrid search (default: fused once `vitrina train` ran, else text)")
    q.set_defaults(func=cmd_eval_text)

    q = kinds.add_parser("image", help="each catalog image queries the index; hits sharing --label-field are relevant")
    common(q)
    q.add_argument("--label-field", required=True, metavar="F", help="catalog field that defines relevance")
    q.add_argument("--space", choices=("image", "fused"), default="image",
                   help="image vectors (default), or fused vectors queried by each product's fused vector and "
                        "by its image alone")
    q.add_argument("--queries", type=int, default=None, metavar="N", help="a random sample of N query products")
    q.add_argument("--seed", type=int, default=0, help="seed of the --queries sample")
    q.set_defaults(func=cmd_eval_image)

    q = kinds.add_parser("cross-modal", help="each product's text queries the image vectors; its own image is relevant")
    common(q, report=False)
    q.add_argument("--queries", type=int, default=None, metavar="N", help="a random sample of N query products")
    q.add_argument("--seed", type=int, default=0, help="seed of the --queries sample")
    q.set_defaults(func=cmd_eval_cross_modal)


def cmd_train_text(args: argparse.Namespace) -> int:
    from vitrina.encoders.text_training import TrainingConfig
    from vitrina.engine.learn.finetune import train_text

    training = TrainingConfig(epochs=args.epochs, batch_size=args.train_batch_size, learning_rate=args.learning_rate,
                              seed=args.seed)
    if training.epochs < 1 or training.batch_size < 2 or training.learning_rate <= 0:
        raise QueryError("--epochs must be >= 1, --train-batch-size >= 2 and --learning-rate > 0")
    result = train_text(args.dir, args.qrels, _config(args), training, args.model_out, args.heldout, args.min_positive)
    losses = ", ".join(f"{loss:.3f}" for loss in result.training.epochs)
    print(f"Fine-tuned the text model on {result.train_queries} queries ({result.examples} with a relevant product in "
          f"the index); {result.heldout_queries} held out for evaluation")
    print(f"  loss per epoch: {losses}; {result.training.steps} steps in {result.training.seconds:.0f} s")
    print(f"  model saved to {result.model_dir}; {args.dir} re-embedded with it in {result.seconds['reindex']:.0f} s")
    print(f"  next: vitrina eval text {args.dir} --qrels {args.qrels}   (scores the held-out queries only)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from vitrina.engine.learn.shared_space import TrainConfig, train_shared_space

    settings = TrainConfig(dim=args.dim, epochs=args.epochs, batch_size=args.train_batch_size,
                             learning_rate=args.learning_rate, heldout=args.heldout, seed=args.seed)
    if settings.learning_rate <= 0:
        raise QueryError("--learning-rate must be > 0")
    model, report, notes = train_shared_space(args.dir, settings, _config(args))
    if args.json:
        print_json({"dir": args.dir, "dim": model.dim, "modalities": report.modalities, "products": report.products,
                    "trained_on": report.trained_on, "heldout": report.heldout, "epochs": report.epochs_run,
                    "best_epoch": report.best_epoch, "validation_recall@10": report.validation_recall_at_10,
                    "losses": report.losses, "seconds": report.seconds, "spaces": ["fused", *(
                        ["shared-image"] if "image" in report.modalities else [])], "notes": notes})
        return 0
    print(f"Trained the shared space of {args.dir}: {model.dim}-d heads for {', '.join(report.modalities)} "
          f"on {report.trained_on} products ({report.heldout} held out) in {report.seconds:.0f} s")
    val = report.validation_recall_at_10
    print(f"  loss per epoch: {', '.join(f'{x:.3f}' for x in report.losses)}; best epoch {report.best_epoch}"
          + (f" (validation recall@10 {val:.3f})" if val is not None else ""))
    for note in notes:
        print(f"  note: {note}")
    print("  search and similar now use the fused space by default (--space text|image to choose)")
    return 0


def _add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="learn the shared space (projection heads and fused vectors) of an index")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--dim", type=int, default=256, help="dimension of the shared space (default 256)")
    p.add_argument("--heldout", type=float, default=0.0, metavar="F",
                   help="share of products (by a hash of the id) never trained on, for honest evaluation (default 0)")
    p.add_argument("--train-batch-size", type=int, default=256, metavar="N", help="products per step (default 256)")
    p.add_argument("--learning-rate", type=float, default=1e-3, metavar="LR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the training report as one JSON object")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train, text_model=None, image_model=None)


def _add_train_text_parser(sub) -> None:
    p = sub.add_parser("train-text", help="fine-tune the index's text model on judged queries, then re-embed")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--qrels", required=True, metavar="FILE.csv", help="columns query_id,query,product_id,relevance")
    p.add_argument("--model-out", default=None, metavar="DIR", help="where to save the model (default DIR.text-model)")
    p.add_argument("--heldout", type=float, default=0.3, metavar="F",
                   help="share of queries (by a hash of query_id) never trained on (default 0.3)")
    p.add_argument("--min-positive", type=float, default=2.0, metavar="X",
                   help="judged relevance that makes a training positive (default 2.0)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-batch-size", type=int, default=64, metavar="N", help="queries per step (default 64)")
    p.add_argument("--learning-rate", type=float, default=5e-5, metavar="LR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    p.set_defaults(func=cmd_train_text, text_model=None, image_model=None)


def _add_model_flags(p: argparse.ArgumentParser, search: bool) -> None:
    what = "override the model recorded in the index (must be the same model)" if search else None
    p.add_argument("--text-model", metavar="NAME|PATH", default=None,
                   help=what or f"text encoder: packaged {DEFAULT_TEXT_MODEL} (default), a local dir, a hub name, or clip:...")
    p.add_argument("--image-model", metavar="NAME|PATH", default=None,
                   help=what or f"image encoder: {DEFAULT_IMAGE_MODEL} (default), resnet50[=PATH], clip:ARCH=TAG|PATH, clip:DIR, none")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present, else cpu)")
    p.add_argument("--offline", action="store_true", help="never contact a model hub")
    _add_runtime_flags(p)


def _add_runtime_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help=f"run encoders on ONNX Runtime (exported once, kept in the index directory) or PyTorch "
                        f"(default {DEFAULT_BACKEND})")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="ONNX weights: auto (int8 text and fp32 images on CPU, fp16 on GPU), fp32, int8 or fp16")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads per ONNX session (default: all cores)")


def _add_catalog_flags(p: argparse.ArgumentParser, models: bool = True) -> None:
    """How a catalog file is read and embedded (index, reindex, upsert)."""
    p.add_argument("--id-field", default="id", metavar="F")
    p.add_argument("--text-fields", default=None, metavar="A,B", help="default: title,description where present")
    p.add_argument("--image-field", default=None, metavar="F", help="default: image, when present")
    p.add_argument("--price-field", default="price", metavar="F", help="parsed as a number when present")
    p.add_argument("--batch-size", type=int, default=32, metavar="N")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--image-root", action="append", default=[], metavar="DIR",
                   help="a folder local images may also come from (repeatable); by default only the catalog's "
                        "folder, and an image resolving elsewhere is refused")
    p.add_argument("--allow-private-urls", action="store_true",
                   help="let image URLs reach loopback, link-local, private and other non-public addresses (refused by default)")
    p.add_argument("--allow-url-network", action="append", default=[], metavar="CIDR",
                   help="a non-public network image URLs may reach, e.g. a CDN on 10.20.0.0/16 (repeatable)")
    if not models:  # the live version's encoders and index types are used
        _add_runtime_flags(p)
        return
    p.add_argument("--index-factory", default=None, metavar="STR", help="FAISS factory string (default by size)")
    p.add_argument("--stemmer", default="english", metavar="LANG|none",
                   help="stemming language of the BM25 index (Snowball; default english)")
    p.add_argument("--no-lexical", action="store_true", help="build no BM25 index (search is dense only)")
    _add_model_flags(p, search=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitrina", description="Multimodal product search for e-commerce catalogs.")
    parser.add_argument("--version", action="version", version=f"vitrina {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="embed a catalog and build an index directory")
    p.add_argument("catalog", metavar="CATALOG", help="catalog file: .csv, .tsv, .jsonl or .parquet")
    p.add_argument("--out", required=True, metavar="DIR", help="index directory (replaced only when indexing succeeds)")
    _add_catalog_flags(p)
    p.add_argument("--fusion-from", default=None, metavar="DIR",
                   help="add a shared space with the heads `vitrina train` learned on another index (same encoders)")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("reindex", help="re-embed a catalog into a new version of a versioned root, resumably, then switch to it")
    p.add_argument("catalog", metavar="CATALOG", help="catalog file: .csv, .tsv, .jsonl or .parquet")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="versioned root: DIR/current links the live version under DIR/versions/")
    p.add_argument("--resume", action="store_true", help="continue an interrupted re-index from its last finished shard")
    p.add_argument("--shard-size", type=int, default=None, metavar="N",
                   help="products per checkpointed shard (default: automatic, a twentieth of the catalog, at least 200 "
                        "and at most 5000, so a resume redoes about 5%% of the work at most)")
    p.add_argument("--keep", type=int, default=3, metavar="N", help="versions kept after publishing (default 3)")
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="where the encode stage runs: this process, or Ray actors (ray.init() finds the cluster)")
    p.add_argument("--ray-actors", type=int, default=None, metavar="N", help="encoder actors on Ray (default: one per GPU, else 2)")
    p.add_argument("--target-recall", type=float, default=0.95, metavar="R",
                   help="recall@10 against exact search that IVF nprobe / HNSW efSearch are tuned to (default 0.95)")
    p.add_argument("--retrain", action="store_true",
                   help="retrain the shared-space heads for the new version (else they are reused when its encoders "
                        "match, and the fused space is left out with a note when they do not)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    _add_catalog_flags(p)
    p.set_defaults(func=cmd_reindex)

    p = sub.add_parser("upsert", help="add or replace products of a versioned root without re-indexing the catalog")
    p.add_argument("dir", metavar="DIR", help="versioned root made by `vitrina reindex`")
    p.add_argument("catalog", metavar="CATALOG", help="the products to add or replace (same format as a catalog)")
    p.add_argument("--keep", type=int, default=3, metavar="N", help="versions kept after publishing (default 3)")
    p.add_argument("--retrain", action="store_true",
                   help="retrain the shared-space heads for the new version (else they are reused when its encoders "
                        "match, and the fused space is left out with a note when they do not)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    _add_catalog_flags(p, models=False)
    p.set_defaults(func=cmd_upsert)

    p = sub.add_parser("delete", help="remove products from a versioned root without re-indexing")
    p.add_argument("dir", metavar="DIR", help="versioned root made by `vitrina reindex`")
    p.add_argument("--ids", required=True, metavar="FILE", help="product ids to remove, one per line")
    p.add_argument("--keep", type=int, default=3, metavar="N", help="versions kept after publishing (default 3)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--retrain", action="store_true",
                   help="retrain the shared-space heads for the new version (else they are reused when its encoders "
                        "match, and the fused space is left out with a note when they do not)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("search", help="text search")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("query", metavar="QUERY", nargs="?")
    p.add_argument("--queries", metavar="FILE.csv", help="batch: CSV with columns query_id,query")
    p.add_argument("-k", type=int, default=None, help="results per query (default 10; 100 in batch mode)")
    p.add_argument("--space", choices=SPACES, default=None,
                   help="fused (default once `vitrina train` ran), text, or image (images in the shared space "
                        "once trained, else through a CLIP text tower)")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="lexical (BM25), dense (vectors) or hybrid (both fused; the default when the index has BM25)")
    p.add_argument("--user", default=None, metavar="U",
                   help="personalise: blend the shopper's behaviour vector into the ranking (from `events add`)")
    p.add_argument("--json", action="store_true", help="JSON output (one object per line in batch mode)")
    _add_model_flags(p, search=True)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("similar", help="visually similar products")
    p.add_argument("dir", metavar="DIR")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--image", metavar="PATH", help="an image file or URL")
    group.add_argument("--id", metavar="PRODUCT_ID", help="a product in the index")
    group.add_argument("--images", metavar="FILE.csv", help="batch: CSV with columns query_id,image (paths relative to FILE)")
    p.add_argument("-k", type=int, default=None, help="results per query (default 10; 100 in batch mode)")
    p.add_argument("--space", choices=SPACES, default=None,
                   help="fused (default once `vitrina train` ran: looks, words and shoppers), image (looks alike), "
                        "or text (described alike; --id only)")
    p.add_argument("--json", action="store_true")
    _add_model_flags(p, search=True)
    p.set_defaults(func=cmd_similar)

    _add_eval_parsers(sub)
    _add_train_text_parser(sub)
    _add_train_parser(sub)
    _add_export_parser(sub)
    _add_feedback_parsers(sub)
    _add_serve_parser(sub)

    p = sub.add_parser("info", help="describe an index directory")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="index the bundled demo catalog and show some searches")
    p.add_argument("--out", default=None, metavar="DIR", help="where to keep the demo index (default ~/.cache/vitrina/demo)")
    p.add_argument("--rebuild", action="store_true", help="re-index even if the demo index exists")
    _add_model_flags(p, search=False)
    p.set_defaults(func=cmd_demo)
    return parser


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from vitrina.engine.build.export import export_models

    if not args.text_model and not args.image_model:
        raise QueryError("give --text-model and/or --image-model to export")
    precisions = ["fp32"] + (["int8"] if args.quantize == "int8" else []) + (["fp16"] if args.fp16 else [])
    config = _config(args)
    exported = export_models(args.out, args.text_model, args.image_model, precisions, config.encoders)
    if args.json:
        print_json({"out": str(Path(args.out).resolve()), "models": exported})
        return 0
    for item in exported:
        files = ", ".join(f"{k}: {v}" for k, v in item["files"].items())
        print(f"Exported {item['role']} encoder {item['encoder']} ({item['dim']}-d) to {item['dir']} [{files}]")
    return 0


def _event_weights(text: str | None):
    from vitrina.engine.data.events import EventWeightConfig

    if not text:
        return EventWeightConfig()
    values = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            raise QueryError(f"--weights: {part!r} is not EVENT=NUMBER") from None
    unknown = set(values) - {"view", "click", "cart", "purchase"}
    if unknown:
        raise QueryError(f"--weights: unknown event {sorted(unknown)[0]!r}; use view, click, cart, purchase")
    return EventWeightConfig(**values)


def cmd_events_add(args: argparse.Namespace) -> int:
    from vitrina.engine.data.events import EventFieldConfig
    from vitrina.engine.learn.feedback import add_events

    fields = EventFieldConfig(user_field=args.user_field, product_field=args.product_field, event_field=args.event_field,
                         timestamp_field=args.timestamp_field, weight_field=args.weight_field,
                         default_event=args.default_event)
    from vitrina.engine.learn.behaviour import BehaviourConfig

    if args.factors < 1 or args.iterations < 1:
        raise QueryError("--factors and --iterations must be at least 1")
    settings = BehaviourConfig(factors=args.factors, iterations=args.iterations)
    added = add_events(_session(args), args.file, _event_weights(args.weights), fields, refit=args.refit, settings=settings)
    r, problems = added.report, added.problems
    if args.json:
        print_json({"events": r.events, "bad_rows": problems.total, "bad_rows_by_reason": dict(problems.counts),
                    "new_users": r.new_users, "users": added.users, "products_with_vectors": added.products_with_vectors,
                    "refit": r.refit, "fused_refreshed": added.fused_refreshed, "notes": added.notes,
                    "duplicates": added.duplicates})
    else:
        print(f"Added {r.events} events ({r.new_users} new users; {r.users_updated} users and {r.items_updated} "
              f"products updated{', full refit' if r.refit else ''}); {added.users} users, "
              f"{added.products_with_vectors} products with behaviour vectors")
        if added.duplicates:
            print(f"  skipped {added.duplicates} events already applied (same event id)")
        if added.fused_refreshed:
            print("  fused product vectors refreshed with the new behaviour vectors")
        for note in added.notes:
            print(f"  note: {note}")
    if problems.total:
        print(f"vitrina: warning: {problems.summary()}", file=sys.stderr)
    return 0


def cmd_events_forget(args: argparse.Namespace) -> int:
    from vitrina.engine.learn.shoppers import forget

    if not is_versioned_root(Path(args.dir)):
        IndexManifest.load(Path(args.dir))  # a clear error for something that is not an index
    gone = forget(Path(args.dir), args.user, _config(args))
    if args.json:
        print_json(gone.to_json())
        return 0
    if not gone.found:
        print(f"vitrina: note: no events or behaviour vector of that user under {args.dir}; nothing to remove",
              file=sys.stderr)
        return 0
    print(f"Forgot the user: {gone.events_removed} events removed from the log; behaviour vectors refit without "
          f"them in {', '.join(gone.versions_refit) or 'no version'}")
    for note in gone.notes:
        print(f"  note: {note}")
    return 0


def _add_max_age_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events-max-age", type=float, default=None, metavar="DAYS",
                   help="retention: events older than this leave the event log and the behaviour vectors "
                        "(applied when the model is snapshotted)")


def cmd_recommend(args: argparse.Namespace) -> int:
    from vitrina.engine.query.recommend import recommend

    settings = RecommendConfig(behaviour_weight=args.behaviour_weight, popularity_weight=args.popularity_weight,
                                 half_life_days=args.half_life or None)
    session = _session(args)
    hits, personalised = recommend(session, args.user, _k(args, 10), args.include_seen, settings)
    if not personalised:
        print(f"vitrina: note: user {args.user!r} has no events; showing the most popular products", file=sys.stderr)
    record = {"user": args.user, "personalised": personalised, "results": hits_json(hits)}
    _emit(args, session, record, f"For {args.user}" + ("" if personalised else " (popular)"), hits)
    return 0


def _add_feedback_parsers(sub) -> None:
    p = sub.add_parser("events", help="shopper events: the feedback loop behind behaviour vectors")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser("add", help="add events and update the index's behaviour vectors without re-indexing")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("file", metavar="FILE", help="CSV or Parquet: user_id,product_id,event,timestamp (or a weight column)")
    q.add_argument("--refit", action="store_true", help="retrain every vector instead of folding the new events in")
    q.add_argument("--factors", type=int, default=64, metavar="N", help="behaviour vector size, at the first fit (default 64)")
    q.add_argument("--iterations", type=int, default=15, metavar="N", help="ALS iterations (default 15)")
    q.add_argument("--weights", default=None, metavar="E=W,...", help="event weights (default view=1,click=2,cart=4,purchase=8)")
    q.add_argument("--user-field", default="user_id", metavar="F")
    q.add_argument("--product-field", default="product_id", metavar="F")
    q.add_argument("--event-field", default="event", metavar="F")
    q.add_argument("--timestamp-field", default="timestamp", metavar="F")
    q.add_argument("--weight-field", default="weight", metavar="F")
    q.add_argument("--default-event", choices=("view", "click", "cart", "purchase"), default=None,
                   help="the kind of every row of a file with no event or weight column (e.g. a purchase log)")
    q.add_argument("--json", action="store_true")
    _add_max_age_flag(q)
    q.set_defaults(func=cmd_events_add, text_model=None, image_model=None)

    q = actions.add_parser("forget", help="remove a shopper: their events, their vector and their part in product "
                                          "vectors, in every kept version")
    q.add_argument("dir", metavar="ROOT", help="an index root (or a plain index directory)")
    q.add_argument("--user", required=True, metavar="U", help="the shopper's id as the events named it")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_events_forget, text_model=None, image_model=None)

    p = sub.add_parser("recommend", help="products for a shopper: like what they bought, and what sells")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--user", required=True, metavar="U")
    p.add_argument("-k", type=int, default=None, help="results (default 10)")
    p.add_argument("--include-seen", action="store_true", help="also recommend products the user already interacted with")
    defaults = RecommendConfig()
    p.add_argument("--behaviour-weight", type=float, default=defaults.behaviour_weight, metavar="W",
                   help=f"share of the ALS behaviour affinity; the rest is likeness to the shopper's products "
                        f"(default {defaults.behaviour_weight})")
    p.add_argument("--popularity-weight", type=float, default=defaults.popularity_weight, metavar="W",
                   help=f"weight of popularity, added on top (default {defaults.popularity_weight})")
    p.add_argument("--half-life", type=float, default=defaults.half_life_days, metavar="DAYS",
                   help=f"a past product counts half as much this many days before the newest event; 0: all alike "
                        f"(default {defaults.half_life_days:g})")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_recommend, text_model=None, image_model=None)


def _add_export_parser(sub) -> None:
    p = sub.add_parser("export-onnx", help="export text and image encoders to ONNX (run later without PyTorch)")
    p.add_argument("--text-model", metavar="NAME|PATH", default=None,
                   help=f"a BERT-family text model ({DEFAULT_TEXT_MODEL}, a directory, ORG/NAME) or clip:...")
    p.add_argument("--image-model", metavar="NAME|PATH", default=None,
                   help="efficientnet-lite0, resnet50[=PATH], clip:ARCH=TAG|PATH or clip:DIR (CLIP also exports its text tower)")
    p.add_argument("--out", required=True, metavar="DIR", help="writes DIR/text, DIR/image and, for CLIP, DIR/image-text")
    p.add_argument("--quantize", choices=("int8",), default=None, help="also write an int8 graph of the text model (CPU)")
    p.add_argument("--fp16", action="store_true", help="also write fp16 graphs (GPU)")
    p.add_argument("--device", default=None, help="where PyTorch traces the models (default: cpu)")
    p.add_argument("--offline", action="store_true", help="never contact a model hub")
    p.add_argument("--json", action="store_true", help="print what was written as one JSON object")
    p.set_defaults(func=cmd_export_onnx, backend="torch", device="cpu")


def cmd_serve(args: argparse.Namespace) -> int:
    import dataclasses
    import os
    import shutil
    import tempfile

    import uvicorn

    from vitrina.index.filters import FilterConfig
    from vitrina.serving.access_log import log_config
    from vitrina.serving.app import SETTINGS_ENV, create_app, settings_for_workers
    from vitrina.serving.config import ServingConfig
    from vitrina.serving.ratelimit import RateLimiter
    from vitrina.serving.timeouts import uvicorn_timeouts

    IndexManifest.load(resolve_index_path(args.dir))  # a clear error now, not in a worker
    if args.workers < 1:
        raise QueryError(f"--workers must be at least 1, got {args.workers}")
    config = dataclasses.replace(
        _config(args), progress=False,
        filters=FilterConfig(category=args.category_field, brand=args.brand_field, price=args.price_field),
    )
    serving = ServingConfig.with_environment_key(
        open_reads=not args.keyed_reads, max_k=args.max_k, cache_size=args.cache_size, batch_size=args.max_batch,
        public_personalisation=args.public_personalisation, rate_limit=args.rate_limit,
        key_rate_limit=args.key_rate_limit, wrong_key_limit=args.wrong_key_limit,
        rate_limit_storage=args.rate_limit_storage, cors_origins=tuple(args.cors_origin),
        header_timeout_s=args.timeout_header, keep_alive_timeout_s=args.timeout_keep_alive,
        reload_roots=tuple(args.reload_root))
    RateLimiter(serving.rate_limit, serving.key_rate_limit, serving.wrong_key_limit, None,
                serving.rate_limit_storage)  # a clear error now for a storage that cannot be used, not in a worker
    server_options = {"log_level": None, "access_log": args.access_log,  # levels set in log_config
                      "log_config": log_config("INFO" if args.verbose else "WARNING"),  # access log without shoppers' ids
                      **uvicorn_timeouts(serving.header_timeout_s, serving.keep_alive_timeout_s)}
    where = f"http://{args.host}:{args.port}"
    writes = "need the API key" if serving.api_key else "are disabled (set VITRINA_API_KEY to enable them)"
    print(f"vitrina: serving {args.dir} on {where} (page /, API docs /docs); writes and admin {writes}", file=sys.stderr)
    if args.workers == 1:
        uvicorn.run(create_app(args.dir, config, serving), host=args.host, port=args.port, **server_options)
        return 0
    run_dir = Path(tempfile.mkdtemp(prefix="vitrina-serve-"))
    (run_dir / "metrics").mkdir()
    serving = dataclasses.replace(serving, metrics_dir=str(run_dir / "metrics"), reload_signal=str(run_dir / "reload.json"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = serving.metrics_dir  # prometheus_client's own switch, read in each worker
    os.environ[SETTINGS_ENV] = settings_for_workers(Path(args.dir), config, serving)
    try:
        uvicorn.run("vitrina.serving.app:app_from_environment", factory=True, host=args.host, port=args.port,
                    workers=args.workers, **server_options)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)  # the workers' metrics files and the reload signal
    return 0


def _add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the HTTP API and search page over an index directory")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (default 1; each loads the index and its encoders once, and counts "
                        "rate limits alone unless --rate-limit-storage is shared)")
    p.add_argument("--keyed-reads", action="store_true", help="searches need the API key too (default: open)")
    p.add_argument("--max-k", type=int, default=100, help="largest k a request may ask for (default 100)")
    p.add_argument("--cache-size", type=int, default=10_000, help="query embeddings cached (LRU; 0: none)")
    p.add_argument("--max-batch", type=int, default=32, help="queries encoded together at most (micro-batching)")
    p.add_argument("--category-field", default=None, metavar="F",
                   help="column the category filter reads (default: category, articleType, product_type_name, ...)")
    p.add_argument("--brand-field", default=None, metavar="F", help="column the brand filter reads (default: brand)")
    p.add_argument("--price-field", default=None, metavar="F", help="column the price filters read (default: price)")
    p.add_argument("--access-log", action="store_true",
                   help="log every request (never the API key; shopper ids in /users/ID and user= show as '-')")
    p.add_argument("--public-personalisation", action="store_true",
                   help="per-shopper reads (/users/ID/recommendations, search?user=) need no API key "
                        "(default: they need it, since they reveal what a shopper bought)")
    p.add_argument("--rate-limit", default="100/second;3000/minute", metavar="LIMITS",
                   help="requests per client address without the API key, e.g. '50/second;1000/minute', or 'off' "
                        "(default %(default)s); 429 with Retry-After beyond. Health, metrics, the page and the docs "
                        "are never limited. Counted per worker process unless --rate-limit-storage is shared")
    p.add_argument("--key-rate-limit", default="1000/second", metavar="LIMITS",
                   help="requests with the API key, counted per key instead of per address (default %(default)s; 'off')")
    p.add_argument("--wrong-key-limit", default="10/minute", metavar="LIMITS",
                   help="wrong API keys per client address before every key check from it gets 429 (default %(default)s)")
    p.add_argument("--rate-limit-storage", default="memory://", metavar="URI",
                   help="where limits are counted: memory:// (default; each of --workers N counts alone, so an "
                        "address gets N times the limit) or redis://HOST:PORT shared by all (pip install limits[redis])")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="let pages from this origin (https://shop.example.com) call the API from a browser; "
                        "repeatable; default none (no CORS headers)")
    p.add_argument("--timeout-header", type=float, default=10.0, metavar="S",
                   help="close a connection whose request headers take longer than S seconds (default %(default)s)")
    p.add_argument("--timeout-keep-alive", type=float, default=5.0, metavar="S",
                   help="close an idle keep-alive connection after S seconds (default %(default)s)")
    p.add_argument("--reload-root", action="append", default=[], metavar="DIR",
                   help="a folder POST /admin/reload may load indexes from; repeatable "
                        "(default: the folder holding DIR)")
    _add_max_age_flag(p)
    _add_model_flags(p, search=True)
    p.set_defaults(func=cmd_serve)


def describe_os_error(args: argparse.Namespace, exc: OSError) -> str:
    """`vitrina COMMAND could not read or write its files: STRERROR (PATH)`, for an OSError that ended a command."""
    command = " ".join(str(getattr(args, name)) for name in ("command", "action", "kind") if getattr(args, name, None))
    why = exc.strerror or str(exc) or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename else ""
    return f"vitrina {command} could not read or write its files: {why}{where}; what was indexed before is unchanged"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="vitrina: %(message)s")
    if getattr(args, "batch_size", 1) is not None and getattr(args, "batch_size", 1) < 1:
        print("vitrina: error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except MissingColumnError as exc:  # the events file's columns are chosen by flags: name the flag
        print(f"vitrina: error: {exc}; name the column with --{exc.setting.replace('_', '-')}", file=sys.stderr)
        return 1
    except USER_ERRORS as exc:
        print(f"vitrina: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk (ENOSPC, EDQUOT), read-only (EROFS), denied (EACCES), failing (EIO)...
        print(f"vitrina: error: {describe_os_error(args, exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vitrina: interrupted; nothing was changed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
