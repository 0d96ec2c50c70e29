"""The encode stage's Ray executor: Ray Data `map_batches` over a pool of encoder actors.

Each actor loads the encoders once (one model per actor, a GPU per actor when the cluster has them)
and turns batches of products into text vectors and image hashes and vectors. The driver keeps
reading the catalog, reusing unchanged vectors and writing the same shard files as the local executor,
so a job may be resumed on either engine.

On a cluster: start Ray on the machines (`ray start --head` / `ray start --address=HEAD:6379`), then
run `RAY_ADDRESS=HEAD:6379 vitrina reindex CATALOG --out DIR --engine ray` on one of them; image paths
must be readable from every node (shared storage or URLs). Without RAY_ADDRESS, Ray starts locally.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from vitrina.encoders import ImageLoadError
from vitrina.encoders.colour import COLOUR_SPACE, colour_descriptor
from vitrina.encoders.image_io import decode_image, read_image_bytes
from vitrina.engine.data.catalog import Product
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.build.encode import Bars, Encoders, ModelSpecs, Previous, colour_rows
from vitrina.engine.build.shards import Shard
from vitrina.index.content import content_hash

DEFAULT_ACTORS = 2  # without GPUs: two actors share the CPUs


class ProductEncoder:
    """A Ray actor: the encoders, loaded once, applied to batches of products."""

    def __init__(self, specs: ModelSpecs, config: VitrinaConfig) -> None:
        self.config = config
        loaded = Encoders.load(specs, config)
        self.text, self.image, self.colour = loaded.text, loaded.image, loaded.colour

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["position"])
        text = np.zeros((n, self.text.dim), dtype=np.float32)
        wanted = np.flatnonzero(batch["encode_text"])
        if len(wanted):
            text[wanted] = self.text.encode([str(batch["text"][i]) for i in wanted])
        image_dim = self.image.dim if self.image is not None else 1
        image = np.zeros((n, image_dim), dtype=np.float32)
        hashes, errors, encoded = [""] * n, [""] * n, np.zeros(n, dtype=bool)
        colour = np.zeros((n, self.colour.dim if self.colour is not None else 1), dtype=np.float32)
        described = np.zeros(n, dtype=bool)
        items, slots = [], []
        for i in range(n):
            source = str(batch["image"][i])
            if self.image is None or not source:
                continue
            try:
                enc = self.config.encoders
                data = read_image_bytes(source, enc.image_timeout_s, self.config.images)
                hashes[i] = content_hash(data)
                unchanged = hashes[i] == str(batch["previous_image_hash"][i])
                colour_kept = self.colour is None or hashes[i] == str(batch["previous_colour_hash"][i])
                if unchanged and colour_kept:
                    continue  # unchanged: the driver keeps the live vectors
                decoded = decode_image(data, source, enc.image_max_pixels, enc.image_max_aspect)
                if not colour_kept:  # from the same decoded photo as the CNN vector (as the local executor)
                    colour[i], described[i] = colour_descriptor(decoded, self.colour), True
                if not unchanged:
                    items.append(decoded)
                    slots.append(i)
            except ImageLoadError as exc:
                errors[i] = str(exc)
        if items:
            image[slots] = self.image.encode(items)
            encoded[slots] = True
        return {"position": batch["position"], "text": text, "image": image, "image_hash": np.asarray(hashes, dtype=object),
                "image_error": np.asarray(errors, dtype=object), "image_encoded": encoded,
                "colour": colour, "colour_described": described}


def _actors(requested: int | None) -> tuple[int, float]:
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    count = requested or (gpus or DEFAULT_ACTORS)
    return count, (1.0 if gpus else 0.0)


class RayExecutor:
    """The encode stage on Ray: each shard a Ray Data `map_batches` over a pool of encoder actors."""

    def __init__(self, encoders: Encoders, config: VitrinaConfig, previous: Previous, actors: int | None = None) -> None:
        self.specs, self.text_dim, self.config, self.previous, self.actors = encoders.specs, encoders.text.dim, config, previous, actors
        self.colour = encoders.colour
        self.seconds = {"text": 0.0, "image": 0.0}  # not known apart: Ray encodes both in one pass (see `encode`)

    def close(self) -> None:
        pass

    def encode(self, number: int, products: Sequence[Product], bars: Bars) -> Shard:
        """One shard encoded by Ray actors; the same Shard the local executor makes."""
        import ray

        started = time.perf_counter()
        if not ray.is_initialized():
            ray.init(ignore_reinit_error=True, log_to_driver=False)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        previous, config = self.previous, self.config
        text_hashes, text, todo = previous.reuse_texts(products, self.text_dim)
        encode_text = set(todo)
        items = [{"position": i, "text": p.text, "image": p.image or "", "encode_text": i in encode_text,
                  "previous_image_hash": previous.digest("image", p.id),
                  "previous_colour_hash": previous.digest(COLOUR_SPACE, p.id)} for i, p in enumerate(products)]
        actors, gpus = _actors(self.actors)
        dataset = ray.data.from_items(items).map_batches(
            ProductEncoder, fn_constructor_kwargs={"specs": self.specs, "config": config},
            batch_size=config.encoders.batch_size, batch_format="numpy", concurrency=actors, num_gpus=gpus,
        )
        rows = sorted(dataset.take_all(), key=lambda r: int(r["position"]))
        for i in todo:
            text[i] = rows[i]["text"]
        image_hashes = [str(r["image_hash"]) for r in rows]
        failures = [(products[i].id, str(r["image_error"])) for i, r in enumerate(rows) if r["image_error"]]
        positions, vectors, colours = [], [], {}
        for i, r in enumerate(rows):
            if not image_hashes[i] or r["image_error"]:
                continue
            positions.append(i)
            vectors.append(np.asarray(r["image"], dtype=np.float32) if r["image_encoded"]
                           else previous.vector("image", products[i].id, image_hashes[i]))
            colours[i] = (np.asarray(r["colour"], dtype=np.float32) if r["colour_described"]
                          else previous.vector(COLOUR_SPACE, products[i].id, image_hashes[i]))
        if "decode" in bars:
            bars["decode"].update(sum(1 for p in products if p.image))
        if "text" in bars:
            bars["text"].update(len(todo))
        image_dim = len(rows[0]["image"]) if rows else 0
        self.seconds["image"] += time.perf_counter() - started  # text and images together, counted once
        return Shard(number, [p.id for p in products], text_hashes, image_hashes, text,
                     np.stack(vectors) if vectors else np.zeros((0, image_dim), dtype=np.float32),
                     np.asarray(positions, dtype=np.int64), failures,
                     len(todo), int(sum(bool(r["image_encoded"]) for r in rows)),
                     colour_rows(self.colour, colours, np.asarray(positions, dtype=np.int64)))
