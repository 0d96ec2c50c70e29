"""The work folder of a re-index: a job description, then one embedding shard per slice of the catalog.

A shard file appears whole or not at all (written to a temporary name, then renamed), so the set of
shard files is the checkpoint: a killed job resumes at the first missing shard and re-does at most
the one that was in flight. `job.json` records what the shards were made from; a resume with another
catalog file or other settings is refused rather than mixing embeddings.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitrina.engine.errors import CatalogError
from vitrina.errors import Param

JOB_FILE = "job.json"


@dataclass
class Shard:
    """The embeddings of products [start, start + len(ids)) of the catalog, in catalog order."""

    index: int
    ids: list[str]
    text_hashes: list[str]
    image_hashes: list[str]  # "" where the product has no image
    text: np.ndarray  # (n, text dim)
    image: np.ndarray  # (m, image dim): the products whose image could be read
    image_positions: np.ndarray  # (m,) position in this shard of each image vector
    failures: list[tuple[str, str]] = field(default_factory=list)  # (product id, reason) of unreadable images
    encoded_text: int = 0  # how many were encoded here (the rest reused from the live version)
    encoded_images: int = 0
    colour: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (m, d) colour descriptor of each image vector; (0, 0): none stored

    def __len__(self) -> int:
        return len(self.ids)


class ShardStore:
    """Shards and the job description of one re-index, under `folder` (DIR/.reindex)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def job(self) -> dict | None:
        path = self.folder / JOB_FILE
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # a job that never finished describing itself has no usable shards

    def start(self, job: dict, resume: bool) -> list[int]:
        """Begin (or with `resume`, continue) the job; returns the shard numbers already done."""
        job = json.loads(json.dumps(job))  # as it reads back (tuples become lists)
        previous = self.job()
        if resume and previous is not None:
            if previous != job:
                changed = sorted(k for k in set(job) | set(previous) if job.get(k) != previous.get(k))
                raise CatalogError(
                    "cannot resume the re-index in {folder}: {changed} changed since it started (the catalog file "
                    "or the settings). Run again without {resume} to start over.", folder=self.folder,
                    changed=", ".join(changed), resume=Param("resume"))
            return self.done()
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        _atomic_write(self.folder / JOB_FILE, json.dumps(job, indent=2, sort_keys=True).encode())
        return []

    def done(self) -> list[int]:
        return sorted(int(p.stem.split("-")[1]) for p in self.folder.glob("shard-*.npz"))

    def path(self, number: int) -> Path:
        return self.folder / f"shard-{number:06d}.npz"

    def write(self, shard: Shard) -> None:
        arrays = {
            "ids": np.asarray(shard.ids, dtype=str), "text_hashes": np.asarray(shard.text_hashes, dtype=str),
            "image_hashes": np.asarray(shard.image_hashes, dtype=str), "text": shard.text, "image": shard.image,
            "image_positions": np.asarray(shard.image_positions, dtype=np.int64),
            "failure_ids": np.asarray([f[0] for f in shard.failures], dtype=str),
            "failure_reasons": np.asarray([f[1] for f in shard.failures], dtype=str),
            "encoded": np.asarray([shard.encoded_text, shard.encoded_images], dtype=np.int64),
            "colour": np.asarray(shard.colour, dtype=np.float32),
        }
        target = self.path(shard.index)
        tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            with tmp.open("wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def read(self, number: int) -> Shard:
        with np.load(self.path(number)) as data:
            return Shard(
                number, data["ids"].tolist(), data["text_hashes"].tolist(), data["image_hashes"].tolist(),
                data["text"], data["image"], data["image_positions"],
                list(zip(data["failure_ids"].tolist(), data["failure_reasons"].tolist())),
                int(data["encoded"][0]), int(data["encoded"][1]),
                data["colour"] if "colour" in data else np.zeros((0, 0), np.float32),
            )

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _atomic_write(target: Path, data: bytes) -> None:
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
