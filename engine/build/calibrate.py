"""Calibrate an index's dense similarities on its own catalog: the relevance floor and the score scale.

Two sets of probe queries are made from the catalog, seeded (CALIBRATION_SEED), PROBES of each:
- catalog probes: a window of 1 to 4 consecutive words of a random product's text (what a shopper who
  knows the catalog might type);
- random probes: each catalog probe with every character replaced by a random letter a-z, so they have
  the same word counts and word lengths but mean nothing.

Each probe goes through the dense leg as a hybrid search sends it (typos corrected, then encoded for the
space) and its best similarity over the catalog is taken. The floor is the FLOOR_QUANTILE (99%) of the
random probes' best similarities: a query whose best match is below it looks no more like the catalog
than 99% of random strings. `high` is the HIGH_QUANTILE (90%) of the catalog probes' best similarities.
`engine.query.calibration` maps a similarity to a relevance of 0.5 at the floor and 0.9 at `high`.

`vitrina index` and every published version of a versioned root (reindex, upsert, delete) write the result
into the index directory (`calibration.json`, the text space); an index without it (built before this, or
copied with another catalog size) and a space trained later (fused) are calibrated the same way on first
use, in memory.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vitrina.engine.query.search import SearchSession
    from vitrina.index import IndexDirectory

CALIBRATION_FILE = "calibration.json"
CALIBRATION_FORMAT = "vitrina-calibration-1"
CALIBRATION_SEED = 17
PROBES = 300
FLOOR_QUANTILE = 0.99
HIGH_QUANTILE = 0.90
MIN_SPREAD = 0.05  # `high` is kept at least this far above the floor
TEXT_SAMPLE = 5000  # product texts the catalog probes are drawn from
LETTERS = "abcdefghijklmnopqrstuvwxyz"
_WORD = re.compile(r"\S+")
log = logging.getLogger("vitrina")


@dataclass(frozen=True)
class SpaceCalibration:
    """One vector space's calibration: the floor on the best similarity, and where relevance reaches 0.9."""

    encoder: str  # the encoder whose similarities these are (a different encoder invalidates them)
    products: int  # the catalog size when calibrated
    floor: float
    high: float
    probes: int

    def to_json(self) -> dict:
        return asdict(self)


def product_texts(session: SearchSession, limit: int = TEXT_SAMPLE, seed: int = CALIBRATION_SEED) -> list[str]:
    """The text fields of up to `limit` products (a seeded sample), joined per product; empty ones left out."""
    fields = session.manifest.catalog.get("text_fields") or []
    count = len(session.products)
    rows = range(count) if count <= limit else sorted(random.Random(seed).sample(range(count), limit))
    texts = []
    for row in rows:
        metadata = session.products.metadata(row)
        text = " ".join(str(metadata.get(f) or "") for f in fields).strip()
        if text:
            texts.append(text)
    return texts


def catalog_probes(texts: list[str], count: int, rng: random.Random) -> list[str]:
    """`count` windows of 1-4 consecutive words of random catalog texts."""
    probes = []
    for _ in range(count):
        words = _WORD.findall(rng.choice(texts))
        n = min(len(words), rng.randint(1, 4))
        start = rng.randrange(len(words) - n + 1)
        probes.append(" ".join(words[start:start + n]))
    return probes


def random_letters_like(text: str, rng: random.Random) -> str:
    """`text` with every character of every word replaced by a random letter a-z (same word lengths)."""
    return " ".join("".join(rng.choice(LETTERS) for _ in word) for word in _WORD.findall(text))


def best_similarities(session: SearchSession, queries: list[str], space: str) -> np.ndarray:
    """Each query's best similarity over the catalog, as the hybrid dense leg sees it (typos corrected)."""
    target = session._text_target(space)[1]
    vectors = session.encode_queries([session.dense_text(q, "hybrid") for q in queries], space)
    scores, rows = session.directory.spaces[target].search(vectors, 1)
    return np.where(rows[:, 0] >= 0, scores[:, 0], -1.0).astype(np.float64)


def calibrate_space(session: SearchSession, space: str, probes: int = PROBES,
                    seed: int = CALIBRATION_SEED) -> SpaceCalibration | None:
    """The calibration of text queries searching `space` (None for a catalog without product text)."""
    texts = product_texts(session, seed=seed)
    if not texts:
        return None
    rng = random.Random(seed)
    catalog = catalog_probes(texts, probes, rng)
    noise = [random_letters_like(p, rng) for p in catalog]
    floor = float(np.quantile(best_similarities(session, noise, space), FLOOR_QUANTILE))
    high = float(np.quantile(best_similarities(session, catalog, space), HIGH_QUANTILE))
    target = session._text_target(space)[1]
    encoder = session.manifest.space(target).encoder
    return SpaceCalibration(encoder, len(session.products), round(floor, 6), round(max(high, floor + MIN_SPREAD), 6),
                            probes)


def read_calibration(directory: Path) -> dict[str, SpaceCalibration]:
    """The stored calibration of each space ({} where there is none or it cannot be read)."""
    path = Path(directory) / CALIBRATION_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != CALIBRATION_FORMAT:
            return {}
        return {name: SpaceCalibration(**fields) for name, fields in data["spaces"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("ignoring %s (%s); calibrating on first use", path, exc)
        return {}


def write_calibration(directory: Path, spaces: dict[str, SpaceCalibration]) -> None:
    """Store the calibration in the index directory (written beside, then renamed: never half a file)."""
    data = {"format": CALIBRATION_FORMAT, "spaces": {name: c.to_json() for name, c in spaces.items()}}
    target = Path(directory) / CALIBRATION_FILE
    tmp = target.with_name(f".{CALIBRATION_FILE}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def calibrate_index(index: Path | IndexDirectory, config=None) -> dict[str, SpaceCalibration]:
    """Calibrate a freshly built index's text space (where it has a lexical index, so hybrid search runs) and
    store it in the directory; best effort: a failure is logged and the index calibrates on first use.
    `index`: the directory's path, or the IndexDirectory a build has just saved, calibrated as it is held in
    memory (reading it back cost `vitrina index` of 10,000 titles 0.2 s) unless its text vectors are stored in
    another precision (float16): then on what searches will read."""
    from vitrina.engine.config import VitrinaConfig
    from vitrina.engine.query.search import SearchSession
    from vitrina.index import IndexDirectory

    config = config or VitrinaConfig()
    # the probes are encoded between steps in Python (typo correction, searches): ONNX Runtime's idle threads
    # spinning through those cost `vitrina index` 0.17 s of CPU (the numbers are the same either way)
    config = replace(config, encoders=replace(config.encoders, spin=False))
    try:
        if not isinstance(index, IndexDirectory):
            session = SearchSession(index, config)
        elif all(space.dtype == "float32" for space in index.spaces.values()):  # held as stored
            session = SearchSession.over(index, config)
        else:
            session = SearchSession(index.path, config)
        if session.directory.lexical is None or "text" not in session.manifest.spaces:
            return {}
        calibration = calibrate_space(session, "text")
        if calibration is None:
            return {}
        spaces = {"text": calibration}
        write_calibration(session.path, spaces)
        return spaces
    except Exception as exc:  # noqa: BLE001 - calibration is an optimisation of the first search, never a build failure
        log.warning("could not calibrate %s (%s); it will calibrate on first use", getattr(index, "path", index), exc)
        return {}
