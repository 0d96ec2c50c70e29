"""vitrina.Index: one product index over its whole life, from data to answers (the Python API).

    import vitrina
    index = vitrina.Index.build("products.csv", "my-index", text_fields=["title"], image_field="image")
    hits = index.search("black summer dress", k=10, where={"articleType": "Dresses"}, price=(10, 50))
    index.similar(id=hits[0].id); index.upsert(records); index.delete(["15943"])

Every method delegates to the engine (build, query, learn, evaluate), the same code the CLI and the
HTTP server run. Heavy libraries (PyTorch, transformers, ONNX Runtime) load only when a model is needed.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union, overload

from PIL import Image

from vitrina.engine.config import RecommendConfig, ShopperConfig, VitrinaConfig
from vitrina.engine.build.groups import grouping_settings
from vitrina.engine.build.in_place import versioned_in_place
from vitrina.engine.data.catalog import records_table
from vitrina.engine.errors import ArgumentError
from vitrina.engine.query.hits import Hits
from vitrina.engine.query.search import SearchHit, SearchSession, query_image
from vitrina.errors import Param
from vitrina.index import IndexManifest
from vitrina.index.versions import is_versioned_root, resolve_index_path

if TYPE_CHECKING:
    import pandas
    import pyarrow

    from vitrina.engine.build.indexing import IndexReport
    from vitrina.engine.build.reindex import ReindexConfig, ReindexReport
    from vitrina.engine.build.updates import UpdateReport
    from vitrina.engine.data.events import EventFieldConfig, EventWeightConfig
    from vitrina.engine.evaluate.evaluation import Evaluation, Qrels
    from vitrina.engine.learn.behaviour import BehaviourConfig
    from vitrina.engine.query.bought_together import BoughtTogetherConfig, BoughtTogetherHit
    from vitrina.engine.learn.feedback import EventsAdded
    from vitrina.engine.learn.shared_space import TrainConfig, TrainReport
    from vitrina.engine.learn.shoppers import Forgotten

Records = Union[Sequence[Mapping[str, Any]], "pandas.DataFrame", "pyarrow.Table"]
CatalogData = Union[str, "os.PathLike[str]", Records]  # a catalog file (.csv, .tsv, .jsonl, .parquet) or its rows
ImageInput = Union[str, "os.PathLike[str]", bytes, Image.Image]  # a path, an http(s) URL, encoded bytes, a PIL image
PriceRange = tuple[Union[float, None], Union[float, None]]  # (lowest, highest); None: open on that side


def default_config() -> VitrinaConfig:
    """The settings the CLI uses by default: the packaged models, the ONNX backend, progress bars, and the
    shoppers' key from VITRINA_USER_KEY when set (so Python and the CLI pseudonymise alike)."""
    return VitrinaConfig(shoppers=ShopperConfig.with_environment_key())


class Index:
    """A Vitrina index: a plain index directory or a versioned root, searched and changed through one object.

    Build one from data with `Index.build`, or open one on disk with `Index.open` (or `Index(path)`).
    Reads (search, similar, recommend) use the version loaded last; every write through this object
    (upsert, delete, add_events, train) makes the next read load it again, so the object sees its own
    writes. Writes by other processes are seen after `reload()`.
    """

    def __init__(self, path: str | os.PathLike[str], config: VitrinaConfig | None = None, *,
                 text_model: str | None = None, image_model: str | None = None) -> None:
        """Open the index at `path` (a plain index directory, or a versioned root: its current version).

        Args:
            path: the index directory or versioned root.
            config: settings (encoder backend, device, ...); default: the CLI's defaults.
            text_model, image_model: the model the index records, found elsewhere (e.g. a moved model
                directory); a different model is refused.
        """
        self.path = Path(path)
        self.config = config or default_config()
        self._models = {"text_model": text_model, "image_model": image_model}
        self.build_report: IndexReport | ReindexReport | None = None  # set by Index.build
        self._loaded: SearchSession | None = self._open_session()

    @classmethod
    def open(cls, path: str | os.PathLike[str], config: VitrinaConfig | None = None, *,
             text_model: str | None = None, image_model: str | None = None) -> "Index":
        """Open the index at `path`: a plain index directory, or a versioned root (its current version).

        Args:
            path: the index directory or versioned root.
            config: settings (encoder backend, device, ...); default: the CLI's defaults.
            text_model, image_model: the model the index records, found elsewhere; a different one is refused.
        """
        return cls(path, config, text_model=text_model, image_model=image_model)

    @classmethod
    def build(cls, data: CatalogData, path: str | os.PathLike[str], *, id_field: str | None = None,
              text_fields: Sequence[str] | None = None, image_field: str | Sequence[str] | None = None,
              price_field: str | None = None, text_model: str | None = None, image_model: str | None = None,
              versioned: bool | None = None, config: VitrinaConfig | None = None,
              rules: str | os.PathLike[str] | Mapping[str, Any] | None = None, group_field: str | None = None,
              collapse_duplicates: bool | float = False, synonyms: str | os.PathLike[str] | None = None) -> "Index":
        """Embed and index a catalog at `path`, and open it.

        Args:
            data: a catalog file (.csv, .tsv, .jsonl, .parquet, optionally .gz) or its rows: a list of
                dicts, a pandas DataFrame or a pyarrow Table.
            path: where the index goes.
            id_field: the column holding product ids (default "id").
            text_fields: the columns whose text is embedded (default: title and description, where present).
            image_field: the column naming each product's image, a path or an http(s) URL (default: "image"
                when present; a field named here must exist). Several images per product: a list of columns
                (or "front,back"), and/or a column holding a list, a JSON array or `|`-separated sources.
            price_field: the column parsed as a price (default "price", when present).
            text_model, image_model: model specs (default: the packaged all-MiniLM-L6-v2 and
                efficientnet-lite0); image_model "none" indexes text only.
            versioned: True makes a versioned root (`vitrina reindex`: versions published atomically,
                unchanged products never re-encoded); False a plain directory (`vitrina index`). Default:
                a versioned root, unless `path` already holds a plain index.
            config: every other setting; the keyword arguments above override its parts.
            rules: merchandising rules stored with the index: a rules file (.json, .yaml) or its data as a
                dict (see `set_rules`). Their form is checked before indexing, their products, columns and
                values once the index is built (RulesError; the index is then built, without the parts that
                do not fit).
            group_field: a column whose equal values make one product group (e.g. "product_code": the colours
                of one product): search, similar and recommend show one hit per group, its other products
                in `hit.variants`.
            collapse_duplicates: without a group field, group products whose normalised title is equal and
                whose photos are near-identical (True: image cosine >= 0.95; a float: that cosine; text-only
                catalogs: equal titles).
            synonyms: a synonyms file (Solr format, index.synonyms) stored with the index; building a root
                again without one keeps the live version's.

        Building again at the same path re-indexes: a root gets a new version (behaviour vectors and
        trained heads carried over), a plain directory is replaced once the new index is complete.
        """
        config = _build_config(config, id_field=id_field, text_fields=text_fields, image_field=image_field,
                               price_field=price_field, text_model=text_model, image_model=image_model,
                               group_field=group_field, collapse_duplicates=collapse_duplicates)
        path = Path(path)
        if versioned is None:
            versioned = not _is_plain_index(path)
        ruleset, settings = None, None
        if rules is not None:
            from vitrina.engine.query.rules.stored import RULES_SETTING, rules_from, rules_setting

            ruleset = rules_from(rules)
            settings = {RULES_SETTING: rules_setting(ruleset)}
        settings = {**_synonyms_file(synonyms), **(settings or {})}
        if versioned:
            from vitrina.engine.build.reindex import reindex

            report: IndexReport | ReindexReport = reindex(_catalog_input(data), path, config, settings_files=settings)
        else:
            from vitrina.engine.build.indexing import build_index

            report = build_index(_catalog_input(data), path, config, settings_files=settings)
        index = cls(path, config)
        index.build_report = report
        if ruleset is not None:
            from vitrina.engine.query.rules.stored import check_rules

            check_rules(index._session, ruleset)
        return index

    # -- reading -----------------------------------------------------------------------------------

    @property
    def manifest(self) -> IndexManifest:
        """The loaded version's manifest: products, fields, vector spaces and encoders."""
        return self._session.manifest

    @property
    def versioned(self) -> bool:
        """Whether this index is a versioned root (else a plain index directory)."""
        return is_versioned_root(self.path)

    def __len__(self) -> int:
        return len(self._session.products)

    def __contains__(self, product_id: object) -> bool:
        return str(product_id) in self._session.products

    def __repr__(self) -> str:
        kind = "versioned root" if self.versioned else "index directory"
        return f"Index({str(self.path)!r}: {kind}, {len(self)} products, spaces {', '.join(self.manifest.spaces)})"

    @staticmethod
    def manifest_of(path: str | os.PathLike[str]) -> IndexManifest:
        """The manifest of the index at `path` (a versioned root: its current version), read without loading
        the index's vectors: what `info()` returns, for an index not opened."""
        return IndexManifest.load(resolve_index_path(path))

    def info(self) -> IndexManifest:
        """The manifest of the loaded version (what `vitrina info --json` prints): product count, catalog
        fields, each vector space's encoder, dimension and index type, and when it was built."""
        return self.manifest

    def product(self, product_id: str) -> dict[str, Any]:
        """A product's catalog row as a dict (its id under the catalog's id field).

        Raises IndexStoreError for an id the index does not hold."""
        products = self._session.products
        metadata = products.metadata(products.row_of(str(product_id)))
        return {self.manifest.catalog.get("id_field") or "id": str(product_id), **metadata}

    def image_source(self, product_id: str) -> str | None:
        """Where a product's image is (an absolute path or a URL), or None when it has none."""
        return self._session.image_source(str(product_id))

    @overload
    def search(self, query: str, k: int = 10, *, where: Mapping[str, Any] | None = None,
               price: PriceRange | None = None, user: str | None = None, space: str | None = None,
               mode: str | None = None, facets: Sequence[str] | None = None, sort: str = "relevance",
               offset: int = 0) -> Hits: ...

    @overload
    def search(self, query: Sequence[str], k: int = 10, *, where: Mapping[str, Any] | None = None,
               price: PriceRange | None = None, user: str | None = None, space: str | None = None,
               mode: str | None = None, facets: Sequence[str] | None = None, sort: str = "relevance",
               offset: int = 0) -> list[Hits]: ...

    def search(self, query, k=10, *, where=None, price=None, user=None, space=None, mode=None, facets=None,
               sort="relevance", offset=0):
        """Products for a text query, best first; a list of queries gives one list of hits per query.

        Args:
            query: what the shopper typed, or a list of queries.
            k: hits per query (1 to 10,000).
            where: metadata filters, column -> a value, a list of values (any of them), or a (low, high)
                range, e.g. {"articleType": "Dresses", "baseColour": ["Black", "Navy"]}.
            price: a (low, high) price range; None on a side leaves it open.
            user: a shopper's id: re-rank for their behaviour vector (from `add_events`).
            space: "fused" (the default once trained), "text", or "image" (pictures, from words).
            mode: "hybrid" (BM25 and vectors; the default where the index has BM25), "lexical" or "dense".
            facets: catalog columns, e.g. ["articleType", "brand"]: `hits.facets` counts their values
                ({column: {value: count}}, most frequent first) and `hits.price_range` gives (lowest, highest)
                price over the matched set: all lexical matches plus the dense candidates at the hybrid
                candidate depth that reach the relevance floor, inside the filters (`hits.total` is its size).
            sort: "relevance" (default), "price_asc" or "price_desc" (the matched set by price, unknown last).
            offset: hits to skip, for paging (offset + k at most 10,000); pages concatenate to the unpaged list.

        Returns Hits, a list of hits: each has `id`, `score` and `product` (the catalog row as a dict).
        With `user`, `hits.personalised` says whether the shopper's behaviour re-ranked them (False: the
        shopper has no behaviour vector yet, and the hits are the plain results); without, it is None.
        `hits.corrected_query` is the query the BM25 leg searched where it corrected misspelled words to
        catalog words ("jaket" -> "jacket"), else None.
        `hits.rules_fired` lists the ids of the merchandising rules (`set_rules`) that acted on the hits.
        Raises QueryError for a filter or facet on a column the catalog lacks (see `check_filters`), an
        unknown sort, or a page past 10,000 hits.
        """
        queries = _queries(query)
        hits = self._session.search(queries, _k(k), space=space, mode=mode, where=where, price=price, user=user,
                                    facets=facets, sort=sort, offset=offset)
        return hits[0] if isinstance(query, str) else hits

    def set_rules(self, rules: str | os.PathLike[str] | Mapping[str, Any] | None, *, keep: int = 3) -> Path:
        """Store merchandising rules with the index: pin, boost, bury or hide products for query patterns.

        Args:
            rules: a rules file (.json, .yaml or .yml) or its data as a dict, `{"rules": [{"id": ..., "query" |
                "contains" | "any": ..., "pin" | "boost" | "bury" | "hide": ...}, ...]}` (README, "Merchandising
                rules"); None removes the rules.
            keep: versions kept after publishing.

        The rules are checked (RulesError names the file, rule and field: an unknown key, product, column or
        value, a bad position), then a new version of the index is published with them (a plain index
        directory first becomes a versioned root, as for `upsert`); searches report the rules that fired in
        `hits.rules_fired`. A server picks them up on `POST /admin/reload`. Returns the new version's directory.
        """
        from vitrina.engine.query.rules.stored import check_rules, rules_from, set_index_rules

        ruleset = None if rules is None else rules_from(rules)
        if ruleset is not None:
            check_rules(self._session, ruleset)
        version_dir = set_index_rules(self.path, ruleset, self.config, keep)
        self._written()
        return version_dir

    @property
    def rules(self) -> dict[str, Any] | None:
        """The merchandising rules the loaded version answers with, in the file format (None: it has none)."""
        bound = self._session.rules
        return None if bound is None else bound.rules.to_json()

    def check_filters(self, where: Mapping[str, Any] | None = None, price: PriceRange | None = None) -> None:
        """Check filters against this index's catalog before searching with them: a QueryError names a column
        the catalog lacks or a value it cannot compare (what `search`, `similar` would raise)."""
        self._session.allowed_rows(where=where, price=price)

    def similar(self, id: str | None = None, *, image: ImageInput | Sequence[ImageInput] | None = None, k: int = 10,
                where: Mapping[str, Any] | None = None, price: PriceRange | None = None,
                space: str | None = None) -> list[SearchHit] | list[list[SearchHit]]:
        """Products like a catalog product (itself left out) or like a photo, best first.

        Args:
            id: a product in the index.
            image: instead of id, a photo: a file path, an http(s) URL, encoded bytes or a PIL image; a
                list of them gives one list of hits per image.
            k: hits (1 to 10,000).
            where, price: filters, as in `search`.
            space: "fused" (the default once trained: looks, words and shoppers), "image" (looks
                alike; the default before), or "text" (described alike; with id only).

        Raises ImageLoadError (a VitrinaError) for a photo that cannot be read.
        """
        if (id is None) == (image is None):
            raise ArgumentError("give {id} or {image}, not both and not neither",
                                id=Param("id"), image=Param("image"))
        if id is not None:
            return self._session.similar_to_product(str(id), _k(k), space, where=where, price=price)
        many = isinstance(image, (list, tuple))
        images = [query_image(item, self.config) for item in (image if many else [image])]
        hits = self._session.similar_to_images(images, _k(k), space, where=where, price=price)
        return hits if many else hits[0]

    def recommend(self, user: str, k: int = 10, *, include_seen: bool | None = None,
                  settings: RecommendConfig | None = None) -> Hits:
        """Products for a shopper: like what they bought, and what sells. A shopper with no events gets
        the best sellers.

        Args:
            user: the shopper's id, as the events named it.
            k: products (1 to 10,000).
            include_seen: also recommend products the shopper already interacted with (with a re-buy
                score); None: `settings.include_seen`, else decided from the events (on when the shop's
                customers re-buy: `RecommendConfig.seen_share`).
            settings: the weights of behaviour, popularity and recency (default: RecommendConfig()).

        Returns Hits; `hits.personalised` is False when the shopper has no events (the best sellers).
        Raises QueryError when the index has no events yet (`add_events` first).
        """
        from vitrina.engine.query.recommend import recommend

        return Hits(*recommend(self._session, str(user), _k(k), include_seen, settings or RecommendConfig()))

    def bought_together(self, product_id: str, k: int = 10, *, where: Mapping[str, Any] | None = None,
                        price: PriceRange | None = None, settings: BoughtTogetherConfig | None = None
                        ) -> list[BoughtTogetherHit]:
        """Products frequently bought together with a product: those in the same baskets most often
        (`hit.source == "co-purchase"`, `hit.co_purchases` baskets), the list filled with similar products
        (`"similar"`) where co-purchases run short. Never the product itself; counts only, no shopper.

        Args:
            product_id: a product in the index.
            k: products (1 to 10,000).
            where, price: filters, as in `search`.
            settings: ranking, minimum distinct shoppers per pair, fill (default: BoughtTogetherConfig()).

        Raises IndexStoreError for an id the index does not hold. Baskets come from the events' basket_id
        (or session_id) column, else a shopper's purchases on one day (`add_events`).
        """
        from vitrina.engine.learn.behaviour import load_index_behaviour
        from vitrina.engine.query.bought_together import BoughtTogetherConfig, bought_together

        session = self._session
        model, _ = load_index_behaviour(session.path, session.products.ids, session.config.shoppers)
        return bought_together(session, model, str(product_id), _k(k), settings or BoughtTogetherConfig(),
                               where=where, price=price)

    def evaluate_text(self, qrels: str | os.PathLike[str] | Qrels, k: int = 10, *, min_relevance: float = 0.0,
                      methods: Sequence[str] | None = None, exact: bool = False, include_trained: bool = False,
                      space: str | None = None) -> Evaluation:
        """Relevance of BM25, dense and hybrid search on judged queries (what `vitrina eval text` prints).

        Args:
            qrels: a CSV file with columns query_id, query, product_id, relevance, or a read `Qrels`.
            k: the metric cutoff (nDCG@k, recall@k, MRR@k, precision@k, mAP@k; recall@100 always).
            min_relevance: judged products count as relevant from this grade (default: any above 0).
            methods: a subset of "lexical", "dense", "hybrid" (default all the index can run).
            exact: also rank by exact search over the stored vectors (what the ANN index loses).
            include_trained: also score queries the text model was fine-tuned on.
            space: the vectors of dense and hybrid search, "text" or "fused" (default: as `search`).

        Returns an Evaluation: `to_json()` holds the means per method, `write_per_query(path)` the rows.
        """
        from vitrina.engine.evaluate.evaluation import TEXT_METHODS, Qrels, evaluate_text, read_qrels

        chosen = list(methods) if methods is not None else list(TEXT_METHODS)
        unknown = [m for m in chosen if m not in TEXT_METHODS]
        if unknown:  # before the judgements are read: the cheap check first
            raise ArgumentError("{methods}: unknown method {name!r}; choose from {choices}",
                                methods=Param("methods"), name=unknown[0], choices=", ".join(TEXT_METHODS))
        judged = qrels if isinstance(qrels, Qrels) else read_qrels(qrels)
        return evaluate_text(self._session, judged, _k(k), min_relevance, chosen, include_trained=include_trained,
                             exact=exact, progress=self.config.progress, space=space)

    def evaluate_image(self, label_field: str, k: int = 10, *, queries: int | None = None, seed: int = 0,
                       space: str = "image") -> Evaluation:
        """Each product image queries the index (itself left out); a hit sharing its `label_field` value is
        relevant (what `vitrina eval image` prints).

        Args:
            label_field: the catalog column that defines relevance, e.g. "articleType".
            k: the metric cutoff (recall@100 always).
            queries: a random sample of this many query products (default: all with an image).
            seed: the sample's seed.
            space: "image", or "fused": queried by each product's fused vector and by its image alone.
        """
        from vitrina.engine.evaluate.evaluation import evaluate_image

        return evaluate_image(self._session, label_field, _k(k), queries, seed, self.config.progress, space)

    def evaluate_cross_modal(self, k: int = 10, *, queries: int | None = None, seed: int = 0) -> Evaluation:
        """Each product's text queries the image vectors; its own image is the relevant hit (what `vitrina eval
        cross-modal` prints). A trained index asks only its held-out products, when it has any.

        Args:
            k: the metric cutoff (recall@100 always).
            queries: a random sample of this many query products (default: all).
            seed: the sample's seed.
        """
        from vitrina.engine.evaluate.evaluation import evaluate_cross_modal

        return evaluate_cross_modal(self._session, _k(k), queries, seed, self.config.progress)

    def write_report(self, evaluation: Evaluation, path: str | os.PathLike[str], *, worst: int = 10) -> Path:
        """Write an evaluation of this index as a self-contained HTML report (plots, and the `worst` queries
        with their products' texts and thumbnails) at `path`, and return where it went."""
        from vitrina.engine.evaluate.report import write_report

        return write_report(evaluation, self._session, path, worst)

    # -- writing -----------------------------------------------------------------------------------

    def upsert(self, data: CatalogData, *, retrain: bool = False, keep: int = 3) -> UpdateReport:
        """Add products, or replace those with the same id; only changed texts and images are encoded.

        Args:
            data: the products, as a catalog file or rows (see `build`); the index's catalog fields apply.
            retrain: train new shared-space heads for the new version (else they are carried over).
            keep: versions kept after publishing.

        Each write publishes a new version, as `vitrina upsert` does. A plain index directory first
        becomes a versioned root in place (its index is the first version; see `make_versioned`).
        Returns the UpdateReport (added, updated, unchanged, deleted, encoded, notes).
        """
        from vitrina.engine.build.updates import upsert

        self._writable()
        report = upsert(self.path, _catalog_input(data), self._catalog_config(), self._reindex_settings(keep),
                        retrain=retrain)
        self._written()
        return report

    def delete(self, ids: Sequence[str], *, retrain: bool = False, keep: int = 3) -> UpdateReport:
        """Remove products by id (ids the index does not hold are reported in `not_found`).

        Args:
            ids: the product ids.
            retrain: train new shared-space heads for the new version (else they are carried over).
            keep: versions kept after publishing.

        Publishes a new version like `upsert` (a plain index directory first becomes a versioned root).
        """
        from vitrina.engine.build.updates import delete

        if isinstance(ids, (str, bytes)) or not all(isinstance(i, (str, int)) for i in ids):
            raise ArgumentError("{ids} must be a list of product ids", ids=Param("ids"))
        self._writable()
        report = delete(self.path, [str(i) for i in ids], self._catalog_config(), self._reindex_settings(keep),
                        retrain=retrain)
        self._written()
        return report

    def add_events(self, events: str | os.PathLike[str] | Records, *, refit: bool = False,
                   weights: EventWeightConfig | None = None, fields: EventFieldConfig | None = None,
                   settings: BehaviourConfig | None = None) -> EventsAdded:
        """Learn from shoppers' events: log them and update the behaviour vectors (no re-index).

        Args:
            events: a CSV or Parquet file, or rows (a list of dicts, a DataFrame, a pyarrow Table) with
                user_id, product_id, event (view, click, cart, purchase) or weight, and timestamp (ISO
                8601 or epoch seconds).
            refit: retrain every behaviour vector instead of folding the new events in.
            weights: what each event counts (default view 1, click 2, cart 4, purchase 8).
            fields: the column names, when they differ from the defaults above.
            settings: the ALS settings of the first fit (factors, iterations).

        Events already applied (the same event) are skipped and counted. Returns EventsAdded: events
        applied, bad rows by reason (`problems`), users, and whether the fused vectors were refreshed.
        """
        from vitrina.engine.data.events import (
            EventFieldConfig, EventWeightConfig, events_from_records, events_from_table, read_events,
        )
        from vitrina.engine.learn.behaviour import BehaviourConfig
        from vitrina.engine.learn.feedback import fold_in

        weights, fields = weights or EventWeightConfig(), fields or EventFieldConfig()
        rows = self._session.products.rows_by_id
        if isinstance(events, (str, os.PathLike)):
            event_log = read_events(events, rows, weights, fields)
        else:
            table = _as_arrow(events, "events")
            if table is None:
                event_log = events_from_records(list(events), rows, weights, fields)
            else:
                event_log = events_from_table(table, "events", lambda i: f"events[{i}]", rows, weights, fields)
        added = fold_in(self._session, event_log, refit, settings or BehaviourConfig())
        self._written()
        return added

    def forget(self, user: str) -> Forgotten:
        """Remove a shopper everywhere: their events from the log, their behaviour vector, and their part in the
        product vectors of every kept version (refit from the remaining events; fused vectors too).

        Returns Forgotten: whether the shopper was found, events removed, versions refit, notes."""
        from vitrina.engine.learn.shoppers import forget

        gone = forget(self.path, str(user), self.config)
        self._written()
        return gone

    def train(self, *, dim: int = 256, epochs: int = 15, heldout: float = 0.0, seed: int = 0, colour: float | None = None,
              attributes: Sequence[str] = (), captions: float | None = None,
              settings: TrainConfig | None = None) -> TrainReport:
        """Learn the shared space (projection heads and fused vectors) from the index's own vectors and
        behaviour; search and similar then default to the fused space.

        Args:
            dim: the shared space's dimension.
            epochs: training epochs (the best one, by validation recall, is kept).
            heldout: share of products (by a hash of the id) never trained on, for honest evaluation.
            seed: the random seed.
            colour: weight of each photo's stored colour descriptor joined to its image vector before the image head
                (relative to the image vectors' norm; None: TrainConfig's default, 0: image vectors only).
            attributes: catalog columns (e.g. ["articleType", "baseColour"]) to learn attribute heads for on
                the same split; `similar` then ranks products of the same predicted values first.
            captions: weight of each photo's neighbour caption (the text vectors of the training products whose
                photos look most like it) joined to the image head's input (None: TrainConfig's default, 0: none).
            settings: every training setting (TrainConfig); overrides the arguments above.

        Returns the TrainReport: the space's dimension, losses, best epoch, validation recall@10, and notes
        (e.g. a modality left out).
        """
        from vitrina.engine.learn.shared_space import TrainConfig, train_shared_space

        settings = settings or TrainConfig(dim=dim, epochs=epochs, heldout=heldout, seed=seed,
                                           attributes=attributes if isinstance(attributes, str) else tuple(attributes),
                                           **({} if colour is None else {"colour": colour}),
                                           **({} if captions is None else {"captions": captions}))
        _, report, _ = train_shared_space(self.path, settings, self.config)
        self._written()
        return report

    def reload(self) -> None:
        """Load the index again: a versioned root's current version, with writes by other processes."""
        self._loaded = self._open_session()

    def set_synonyms(self, path: str | os.PathLike[str] | None, *, keep: int = 3) -> Path:
        """Store the synonyms file at `path` with the index (None removes them): a new version of the root,
        a copy of the live one with the new file, made current (a plain directory becomes a root first).

        Phrases are matched on whole words after typo correction; `tv, television` equivalences add the
        other phrases, `laptop => notebook` rules rewrite the query, in both the lexical and the dense leg.
        A SynonymsError names the file and line of a problem. Returns the new version's directory; a server
        serving this root picks it up on `POST /admin/reload`.
        """
        from vitrina.engine.build.settings import publish_setting
        from vitrina.index.synonyms import SYNONYMS_FILE, Synonyms

        data = None if path is None else Synonyms.read(path).to_bytes()
        version_dir = publish_setting(self.path, SYNONYMS_FILE, data, self.config, keep=keep)
        self._written()
        return version_dir

    def make_versioned(self) -> None:
        """Turn a plain index directory into a versioned root in place (nothing to do for a root).

        The index becomes the root's first version (versions/VERSION, linked by `current`) and its
        event log the root's; products, vectors, behaviour and trained heads stay as they were. Its
        product texts are recorded for later upserts (from the stored catalog columns when the index
        was built without them). `upsert` and `delete` call this on a plain directory.
        """
        if not self.versioned:
            versioned_in_place(self.path, self.config)
            self._written()

    # -- helpers -----------------------------------------------------------------------------------

    @property
    def _session(self) -> SearchSession:
        """The loaded version; after a write, loaded again on first use."""
        if self._loaded is None:
            self._loaded = self._open_session()
        return self._loaded

    def _written(self) -> None:
        """This object changed the index: the next read loads it again (a last write loads nothing)."""
        self._loaded = None

    def _open_session(self) -> SearchSession:
        return SearchSession(self.path, self.config, self._models["text_model"], self._models["image_model"])

    def _writable(self) -> None:
        if not self.versioned:
            self.make_versioned()

    def _catalog_config(self) -> VitrinaConfig:
        """The settings for upserts: the index's own catalog fields (its image field optional, as indexed)."""
        recorded = self.manifest.catalog
        fields = dataclasses.replace(
            self.config.catalog, id_field=recorded.get("id_field") or self.config.catalog.id_field,
            text_fields=tuple(recorded.get("text_fields") or ()) or self.config.catalog.text_fields,
            image_field=recorded.get("image_field"), image_field_required=False,
            max_images=int(recorded.get("max_images") or self.config.catalog.max_images),
        )
        return dataclasses.replace(self.config, catalog=fields)

    @staticmethod
    def _reindex_settings(keep: int) -> ReindexConfig:
        from vitrina.engine.build.reindex import ReindexConfig

        return ReindexConfig(keep=keep)


def _build_config(config: VitrinaConfig | None, **given: Any) -> VitrinaConfig:
    """`config` (default: the CLI's defaults) with the keyword arguments of `Index.build` that were given."""
    config = config or default_config()
    catalog: dict[str, Any] = {}
    if given["id_field"] is not None:
        catalog["id_field"] = given["id_field"]
    if given["text_fields"] is not None:
        if isinstance(given["text_fields"], str):
            raise ArgumentError("{text_fields} must be a list of column names, e.g. ['title', 'description']",
                                text_fields=Param("text_fields"))
        catalog["text_fields"] = tuple(given["text_fields"])
    if given["image_field"] is not None:  # several image columns: a list, or "front,back"
        image_field = given["image_field"]
        image_field = image_field if isinstance(image_field, str) else ",".join(map(str, image_field))
        catalog.update(image_field=image_field, image_field_required=True)
    if given["price_field"] is not None:
        catalog["price_field"] = given["price_field"]
    catalog.update(grouping_settings(given["group_field"], given["collapse_duplicates"]))
    models = {name: given[name] for name in ("text_model", "image_model") if given[name] is not None}
    return dataclasses.replace(config, catalog=dataclasses.replace(config.catalog, **catalog), **models)


def _synonyms_file(path: str | os.PathLike[str] | None) -> dict[str, bytes]:
    """The settings file of `Index.build(synonyms=path)`, checked (none without a path)."""
    from vitrina.index.synonyms import SYNONYMS_FILE, Synonyms

    return {} if path is None else {SYNONYMS_FILE: Synonyms.read(path).to_bytes()}


def _is_plain_index(path: Path) -> bool:
    return (path / "manifest.json").is_file() and not is_versioned_root(path)


def _catalog_input(data: CatalogData) -> Any:
    """A catalog for the build pipeline: a path as is, rows as the engine takes them."""
    if isinstance(data, (str, os.PathLike)):
        return data
    if isinstance(data, Mapping):
        raise ArgumentError("{data} is one product; give a list of products (dicts), a DataFrame or a file",
                            data=Param("data"))
    return data


def _as_arrow(rows: Any, name: str) -> "pyarrow.Table | None":
    """Rows as a pyarrow Table when they are a DataFrame or a Table (as catalogs read them); None for a list of dicts."""
    table = records_table(rows)
    if table is not None:
        return table
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence):
        raise ArgumentError("{name} must be a file, a list of dicts, a DataFrame or a pyarrow Table, not {kind}",
                            name=Param(name), kind=type(rows).__name__)
    return None


def _queries(query: Any) -> list[str]:
    if isinstance(query, str):
        return [query]
    if isinstance(query, Sequence) and query and all(isinstance(q, str) for q in query):
        return list(query)
    raise ArgumentError("{query} must be a string or a non-empty list of strings, not {kind}",
                        query=Param("query"), kind=type(query).__name__)


def _k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise ArgumentError("{k} must be a whole number, not {kind}", k=Param("k"), kind=type(k).__name__)
    return k


__all__ = ["CatalogData", "ImageInput", "Index", "PriceRange", "Records", "default_config"]
