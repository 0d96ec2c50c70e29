"""LiveIndex: one loaded, warmed index version; IndexHolder swaps versions atomically while serving.

A request takes `holder.current` once and answers from that LiveIndex to the end, so a reload in the
middle never mixes versions, and the response names the version that served it. A new version is
loaded and warmed beside the old one (twice the memory for the moment of the swap); a version that
fails to load is refused and the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vitrina.engine.learn.behaviour import BehaviourModel
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.data.events import EventLog
from vitrina.engine.learn.fusion import FUSION_DIR
from vitrina.engine.query.recommend import popularity
from vitrina.engine.query.search import DenseCandidates, SearchSession
from vitrina.engine.learn.shoppers import Recorded, ShopperState
from vitrina.serving.batching import MicroBatcher, QueryCache
from vitrina.serving.config import ServingConfig
from vitrina.serving.metrics import ServiceMetrics

log = logging.getLogger("vitrina.serving")
RETENTION_CHECK_S = 3600.0  # with --events-max-age and no new events, retention is applied this often
RETIRE_AFTER_S = 60.0  # an old version's encoders stay up this long for requests still using them
WARM_UP_IMAGE = Image.new("RGB", (64, 64), (128, 128, 128))


TextJob = tuple[str, str, int | None]  # (cleaned query, space, dense depth to search in the batch or None)


@dataclass(frozen=True)
class EncodedQuery:
    """One text query of a micro-batch: its vector and, where asked, its dense candidates."""

    vector: np.ndarray
    dense: DenseCandidates | None = None


class LiveIndex:
    """An index directory loaded for serving: search session, behaviour model, batchers and cache."""

    def __init__(self, path: Path, config: VitrinaConfig, serving: ServingConfig, metrics: ServiceMetrics) -> None:
        self.path = Path(path)  # as given: an index directory, or a versioned root
        self.config = config
        self.session = SearchSession(self.path, config)
        self.directory = self.session.path  # the index directory loaded (a root's current version)
        self.version = self.session.manifest.version
        self.metrics = metrics
        self.cache = QueryCache(serving.cache_size)
        wait = serving.batch_wait_ms / 1000.0
        self.search_stage = serving.search_stage if serving.search_stage is not None else self._heavy_exact_search()
        self.text_batcher: MicroBatcher[TextJob, EncodedQuery] = MicroBatcher(  # observes its own encoder time
            self._encode_texts, serving.batch_size, wait, then=self._search_dense if self.search_stage else None)
        self.image_batcher: MicroBatcher[tuple[Image.Image, str], np.ndarray] = MicroBatcher(
            self._encode_images, serving.batch_size, wait, lambda n, s: self._observe("image", n, s))
        self.behaviour: BehaviourModel | None = None
        self.behaviour_why = ""
        self.popular: np.ndarray | None = None
        self.shoppers: ShopperState | None = None
        self.fused_stale = False  # events came since the fused vectors were last computed
        self.warmed = False  # encoders loaded and run once (warm_up)
        self.load_behaviour()

    def _heavy_exact_search(self) -> bool:
        """Whether a space is searched exactly over FLAT_MAX vectors or more (milliseconds per query)."""
        from vitrina.index.product_index import FLAT_MAX

        return any(space.index.is_exact and space.index.ntotal >= FLAT_MAX for space in self.session.directory.spaces.values())

    def load_behaviour(self) -> None:
        """(Re)read the behaviour state (snapshot + log tail), with its popularity; None and why when there is none."""
        self.shoppers = ShopperState.of_index(self.directory, self.session.products.ids, self.config.shoppers)
        self._publish()

    def _publish(self) -> None:
        """Point readers at the state's current model (one attribute swap each)."""
        model = self.shoppers.model
        self.popular = popularity(model) if model is not None else None
        self.behaviour, self.behaviour_why = model, self.shoppers.why

    @property
    def trained(self) -> bool:
        return (self.directory / FUSION_DIR).is_dir()

    def record(self, log: EventLog) -> Recorded:
        """Apply events in memory: logged (fsync'd) and folded in, no index reload, no file rewritten."""
        recorded = self.shoppers.record(log)
        self._publish()
        self.fused_stale = self.fused_stale or recorded.report.events > 0
        return recorded

    def catch_up(self) -> int:
        """Apply events other workers (or the CLI) logged, or reload after a forget or retention rewrite."""
        applied = self.shoppers.catch_up()
        if applied or self.shoppers.model is not self.behaviour:  # new events, or reloaded after a rewrite
            self._publish()
            self.fused_stale = True
        return applied

    def refresh_shared_spaces(self) -> bool:
        """Serve the fused spaces a snapshot (or a forget) rewrote, in place: only those spaces are read
        again, not the encoders or the other spaces (a reload would load everything beside the old copy).
        False when the trained spaces changed shape (a space appeared or went): then reload instead."""
        from vitrina.engine.learn.shared_space import SHARED_SPACES
        from vitrina.index import IndexManifest
        from vitrina.index.store import load_space

        manifest = IndexManifest.load(self.directory)
        served = self.session.directory
        if {n for n in SHARED_SPACES if n in manifest.spaces} != {n for n in SHARED_SPACES if n in served.spaces}:
            return False
        for name in SHARED_SPACES:
            info = manifest.spaces.get(name)
            if info is None:
                continue
            space = load_space(self.directory, name, info, self.config.index)
            space.index.ensure_built()  # built before it is served, not by the first request
            served.spaces[name] = space  # one dict item swap per space
            served.manifest.spaces[name] = info
        served.manifest.version = self.version = manifest.version
        self.fused_stale = False
        return True

    def snapshot(self) -> bool:
        """Write the behaviour snapshot (retention applied); whether the fused vectors should be refreshed."""
        rewritten = self.shoppers.snapshot(self.config)
        self._publish()
        return self.trained and (self.fused_stale or rewritten)

    def warm_up(self) -> None:
        """Load the encoders and run each once, build every space's FAISS index and the typo corrector's and exact
        codes' lookups, so the first real query is not the slow one."""
        self.session.encode_queries(["warm up"], self.session.default_space())
        self.build_spaces()
        self.session.rules  # noqa: B018 - the merchandising rules: a damaged file refuses the version here
        lexical = self.session.directory.lexical
        if lexical is not None and lexical.vocabulary is not None:
            lexical.vocabulary.symspell  # noqa: B018 - built on first use: a second or two on a large catalog
        self.session.exact_codes  # noqa: B018 - the exact-code lookup (engine.query.exact): ~1 s per 50,000 products
        if "image" in self.session.manifest.spaces:
            self.session.encode_images([WARM_UP_IMAGE], self.session.default_image_space())

    def build_spaces(self) -> None:
        """Build every space's FAISS index now: an exact space builds it on first use (index.store.load_space), and
        a server builds them before the first request and before `--workers N` fork, so the workers share them."""
        for space in self.session.directory.spaces.values():
            space.index.ensure_built()

    def _observe(self, modality: str, size: int, seconds: float) -> None:
        self.metrics.encoder_batch.labels(modality).observe(size)
        self.metrics.encoder_seconds.labels(modality).observe(seconds)

    def _encode_texts(self, items: list[TextJob]) -> list[EncodedQuery]:
        """Encode the batch (one encoder call per space); without a search stage of its own (ServingConfig.search_stage)
        also search the dense leg here, on the encoder thread."""
        started = time.perf_counter()
        vectors = self._by_space([(text, space) for text, space, _ in items], self.session.encode_queries)
        self._observe("text", len(items), time.perf_counter() - started)
        out = [EncodedQuery(vector) for vector in vectors]
        return out if self.search_stage else self._search_dense(items, out)

    def _search_dense(self, items: list[TextJob], encoded: Sequence[EncodedQuery]) -> list[EncodedQuery]:
        """The dense leg of the queries that want it, one search per (space, depth) over the whole batch (FAISS, or
        one matrix product on an exact index); FAISS and BLAS release the GIL, so the event loop goes on serving.
        A failed search leaves those queries to search on their own (and report their error)."""
        out = list(encoded)
        for space, depth in dict.fromkeys((space, depth) for _, space, depth in items if depth is not None):
            positions = [i for i, (_, s, d) in enumerate(items) if (s, d) == (space, depth)]
            searched = time.perf_counter()
            try:
                found = self.session.dense_candidates(np.stack([out[i].vector for i in positions]), space, depth)
            except Exception as exc:  # noqa: BLE001 - each request then searches on its own, and reports its error
                log.warning("the batched dense search failed (%s); searching per request", exc)
                continue
            self.metrics.index_seconds.labels(space).observe(time.perf_counter() - searched)
            self.metrics.dense_seconds.labels(space).observe(time.perf_counter() - searched)
            self.metrics.dense_batch.labels(space).observe(len(positions))
            for j, i in enumerate(positions):
                out[i] = EncodedQuery(out[i].vector, DenseCandidates(space, depth, found.scores[j:j + 1], found.rows[j:j + 1]))
        return out

    def _encode_images(self, items: list[tuple[Image.Image, str]]) -> list[np.ndarray]:
        return self._by_space(items, self.session.encode_images)

    @staticmethod
    def _by_space(items: list[tuple[object, str]], encode) -> list[np.ndarray]:
        """One encoder call per space in the batch (spaces may differ in dimension)."""
        out: list[np.ndarray] = [np.empty(0)] * len(items)
        for space in dict.fromkeys(space for _, space in items):
            positions = [i for i, (_, s) in enumerate(items) if s == space]
            for i, vector in zip(positions, encode([items[i][0] for i in positions], space)):
                out[i] = vector
        return out

    async def text_vector(self, cleaned: str, space: str) -> np.ndarray:
        """The query vector of an already cleaned text query in `space` (cached, micro-batched)."""
        return (await self.text_query(cleaned, space))[0]

    async def text_query(self, cleaned: str, space: str, depth: int | None = None) -> tuple[np.ndarray, DenseCandidates | None]:
        """The query vector of an already cleaned text query in `space` (cached, micro-batched) and, with a
        `depth`, its dense candidates searched in the same batch (None when the vector came from the cache)."""
        key = (cleaned, space)
        found = self.cache.get(key)
        self.metrics.cache.labels("hit" if found is not None else "miss").inc()
        if found is not None:
            return found, None
        encoded = await self.text_batcher.submit((cleaned, space, depth))
        self.cache.put(key, encoded.vector)
        return encoded.vector, encoded.dense

    async def image_vector(self, image: Image.Image, space: str) -> np.ndarray:
        return await self.image_batcher.submit((image, space))

    def close(self) -> None:
        self.text_batcher.close()
        self.image_batcher.close()


@dataclass(frozen=True)
class Swap:
    index_version: str
    previous_version: str | None
    path: str
    seconds: float


class IndexHolder:
    """The index version being served, and the one place that replaces it."""

    def __init__(self, path: Path, config: VitrinaConfig, serving: ServingConfig, metrics: ServiceMetrics) -> None:
        self.path = Path(path)
        self.config = config
        self.serving = serving
        self.metrics = metrics
        self.current: LiveIndex | None = None
        self.load_error: str | None = None
        self._lock = asyncio.Lock()
        self._signal_seen: float | None = None

    @property
    def ready(self) -> bool:
        return self.current is not None

    async def reload(self, path: str | Path | None = None, announce: bool = True, directory: str | None = None) -> Swap:
        """Load `path` (default: the directory served now; a versioned root loads its current version),
        warm it, then swap it in. `directory`: load exactly this version of `path` (what another worker
        loaded). Raises the load error and keeps the current version when the new one cannot be loaded.
        """
        async with self._lock:
            target = Path(path) if path is not None else self.path
            started = time.perf_counter()
            try:
                live = await asyncio.to_thread(self._load, Path(directory) if directory else target)
                live.path = target
            except Exception:
                self.metrics.reloads.labels("failed").inc()
                raise
            previous, self.current, self.path = self.current, live, target
            self.load_error = None
            self.metrics.serving(live.version, len(live.session.products))
            self.metrics.reloads.labels("ok").inc()
            if previous is not None:
                asyncio.get_running_loop().call_later(RETIRE_AFTER_S, previous.close)
            if announce:
                self._announce(live)
            swap = Swap(live.version, previous.version if previous else None, str(target), time.perf_counter() - started)
            log.info("serving index version %s from %s (loaded in %.1f s)", swap.index_version, target, swap.seconds)
            return swap

    async def keep_shoppers_current(self) -> None:
        """For the life of the server: apply others' events every second, snapshot the behaviour state
        every `snapshot_every_s` (or `snapshot_every_events` events), refresh a trained index's fused
        vectors at snapshot time (a reload, at most once per interval)."""
        settings = self.config.shoppers
        last = retained = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, settings.snapshot_every_s))
            live = self.current
            if live is None or live.shoppers is None:
                continue
            try:
                await asyncio.to_thread(live.catch_up)
                pending, now = live.shoppers.pending, time.monotonic()
                retention_due = settings.max_age_days is not None and now - retained >= RETENTION_CHECK_S
                if pending >= settings.snapshot_every_events or retention_due or (
                        pending and now - last >= settings.snapshot_every_s):
                    last = now
                    retained = now if retention_due else retained
                    await self.snapshot(live)
            except Exception as exc:  # the events stay in the log; the next round tries again
                log.error("could not snapshot the behaviour state of %s: %s", live.directory, exc)

    async def snapshot(self, live: LiveIndex, serve_refreshed: bool = True) -> None:
        """Snapshot one live index's behaviour; when its fused vectors are stale, recompute them on disk and
        (serve_refreshed: not at shutdown) serve them."""
        if await asyncio.to_thread(live.snapshot):
            from vitrina.engine.learn.shared_space import refresh_shared_space

            await asyncio.to_thread(refresh_shared_space, live.directory, self.config)
            if serve_refreshed:
                await self.refresh_fused(live)

    async def refresh_fused(self, live: LiveIndex) -> None:
        """Serve a live index's rewritten fused vectors: swapped in place, or by a reload when they changed shape."""
        if await asyncio.to_thread(live.refresh_shared_spaces):
            self.metrics.serving(live.version, len(live.session.products))
        else:
            await self.reload(live.path)

    def _load(self, path: Path, warm: bool = True) -> LiveIndex:
        live = LiveIndex(path, self.config, self.serving, self.metrics)
        live.build_spaces()  # also when not warmed: FAISS starts no threads here, and forked workers share them
        if warm:
            live.warm_up()
        live.warmed = warm
        return live

    def preload(self, warm: bool) -> None:
        """Load the index now, in this thread (before `vitrina serve --workers N` forks, so the workers share it);
        warm: also load and run the encoders (only where they start no threads: a fork keeps none). A load error
        is kept for /readyz and each worker tries again."""
        try:
            self.current = self._load(self.path, warm)
        except Exception as exc:  # noqa: BLE001 - each worker loads it again and reports why
            self.load_error = str(exc)

    def announced(self) -> dict | None:
        """The version the workers were last told to serve (the reload signal), None when none was announced."""
        if not self.serving.reload_signal:
            return None
        try:
            return json.loads(Path(self.serving.reload_signal).read_text())
        except (OSError, ValueError):
            return None

    async def adopt_preloaded(self) -> None:
        """In a forked worker: finish the index the parent loaded (warm it if it was not) and count it served; a
        worker forked after a reload (to replace one that died) loads the version the others serve instead."""
        live = self.current
        wanted = self.announced()
        if wanted is not None and (wanted.get("version") != live.version or wanted.get("path") != str(self.path)):
            self.current = None  # not ready until the announced version is loaded (the parent's copy is left to it)
            await self.reload(wanted.get("path"), announce=False, directory=wanted.get("directory"))
            return
        if not live.warmed:
            self.current = None  # not ready (503) until warm, as when it loads here
            await asyncio.to_thread(live.warm_up)
            live.warmed, self.current = True, live
        self.metrics.serving(live.version, len(live.session.products))

    def _announce(self, live: LiveIndex) -> None:
        """Tell the other workers (several `--workers`) to load the same directory."""
        signal = self.serving.reload_signal
        if not signal:
            return
        tmp = f"{signal}.{os.getpid()}.tmp"
        Path(tmp).write_text(json.dumps({"path": str(live.path), "directory": str(live.directory), "version": live.version}))
        os.replace(tmp, signal)
        self._signal_seen = os.stat(signal).st_mtime_ns

    async def follow_signal(self) -> None:
        """Reload whenever another worker announces a new version (runs for the life of the worker)."""
        signal = self.serving.reload_signal
        if not signal:
            return
        while True:
            await asyncio.sleep(self.serving.reload_poll_s)
            try:
                stamp = os.stat(signal).st_mtime_ns
                if stamp == self._signal_seen:
                    continue
                self._signal_seen = stamp
                wanted = json.loads(Path(signal).read_text())
            except (OSError, ValueError):
                continue
            if self.current is None or wanted.get("version") != self.current.version or wanted.get("path") != str(self.path):
                try:
                    await self.reload(wanted.get("path"), announce=False, directory=wanted.get("directory"))
                except Exception as exc:  # keep serving the current version
                    log.error("could not follow the reload of %s: %s", wanted.get("path"), exc)
