"""MicroBatcher: concurrent requests share one encoder call; QueryCache: an LRU of query embeddings."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Generic, Hashable, Sequence, TypeVar

import numpy as np
from cachetools import LRUCache

Item = TypeVar("Item")
Result = TypeVar("Result")


Stage = Callable[[list[Item], Sequence[Result]], Sequence[Result]]


class MicroBatcher(Generic[Item, Result]):
    """Collects items submitted from many requests and encodes them in batches on one thread.

    The first item of a batch waits at most `max_wait_s` for others; whatever queued up while the
    previous batch ran joins at once, so batches grow with load and an idle service adds no delay.
    `encode(items)` returns one result (a vector) per item; an exception fails every request of that batch.
    `then(items, results)`, where given, is a second stage on a thread of its own (the exact dense search): it
    runs while the encoder thread encodes the next batch, over every encoded batch that waited for it at once,
    and returns the final results (it must not raise: a failing second stage hands back what it was given).
    """

    def __init__(self, encode: Callable[[list[Item]], Sequence[Result]], max_size: int = 32, max_wait_s: float = 0.002,
                 on_batch: Callable[[int, float], None] | None = None, then: Stage | None = None) -> None:
        self._encode = encode
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._then = then
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future]] | None = None
        self._encoded: asyncio.Queue[tuple[list[tuple[Item, asyncio.Future]], Sequence[Result]]] | None = None
        self._worker: asyncio.Task | None = None
        self._second: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vitrina-encode")
        self._then_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vitrina-search") if then else None

    async def submit(self, item: Item) -> Result:
        """The encoding of `item`, computed in a batch with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run())
        if self._then is not None and (self._second is None or self._second.done()):
            self._encoded = self._encoded or asyncio.Queue()
            self._second = loop.create_task(self._run_second())
        future: asyncio.Future = loop.create_future()
        await self._queue.put((item, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_size:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            live = [(item, future) for item, future in batch if not future.done()]  # drop abandoned requests
            if not live:
                continue
            started = time.perf_counter()
            try:
                vectors = await loop.run_in_executor(self._executor, self._encode, [item for item, _ in live])
            except Exception as exc:  # handed to each waiting request, which turns it into a response
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            if self._on_batch is not None:
                self._on_batch(len(live), time.perf_counter() - started)
            if self._encoded is not None:  # the second stage answers them, while this loop encodes the next batch
                self._encoded.put_nowait((live, vectors))
            else:
                self._answer(live, vectors)

    async def _run_second(self) -> None:
        """The second stage: every encoded batch waiting at once, in one `then` call on its own thread."""
        assert self._encoded is not None and self._then is not None
        loop = asyncio.get_running_loop()
        while True:
            waiting = [await self._encoded.get()]
            while not self._encoded.empty():
                waiting.append(self._encoded.get_nowait())
            live = [pair for batch, _ in waiting for pair in batch]
            vectors = [row for _, rows in waiting for row in rows]
            try:
                results = await loop.run_in_executor(self._then_executor, self._then, [item for item, _ in live], vectors)
            except Exception:  # noqa: BLE001 - the contract says it does not raise; if it does, answer with the vectors
                results = vectors
            self._answer(live, results)

    @staticmethod
    def _answer(live: list[tuple[Item, asyncio.Future]], results: Sequence[Result]) -> None:
        for row, (_, future) in zip(results, live):
            if not future.done():
                future.set_result(row)

    def close(self) -> None:
        for task in (self._worker, self._second):
            if task is not None:
                task.cancel()
        for executor in (self._executor, self._then_executor):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)


class QueryCache:
    """Thread-safe LRU of query vectors keyed by (what was encoded, how)."""

    def __init__(self, size: int) -> None:
        self._cache: LRUCache | None = LRUCache(maxsize=size) if size else None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> np.ndarray | None:
        if self._cache is None:
            return None
        with self._lock:
            found = self._cache.get(key)
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
            return found

    def put(self, key: Hashable, vector: np.ndarray) -> None:
        if self._cache is not None:
            vector.setflags(write=False)  # shared between requests: nobody may change it
            with self._lock:
                self._cache[key] = vector

    def __len__(self) -> int:
        return 0 if self._cache is None else len(self._cache)

