"""The manifest of an index directory: what was indexed, with which encoders, and how."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from vitrina.index.errors import IndexStoreError

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"


@dataclass
class SpaceInfo:
    """One vector space (text or image): the encoder that made it and the FAISS index over it."""

    encoder: str  # the encoder's stable name, checked when the index is searched
    model: str  # the spec that loads that encoder again
    dim: int
    count: int
    factory: str
    runtime: str = ""  # how the encoder ran: "onnx int8 (CPUExecutionProvider)", "torch (cpu)"
    tuning: dict | None = None  # index.tuning.Tuning of an approximate index: {"parameter", "value", "recall", ...}

    def tuned_parameters(self) -> dict[str, int]:
        return {self.tuning["parameter"]: int(self.tuning["value"])} if self.tuning else {}


def new_version() -> str:
    """A unique index version that sorts by time of writing: UTC to the microsecond, plus a random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ") + "-" + uuid.uuid4().hex[:6]


@dataclass
class IndexManifest:
    product_count: int
    catalog: dict
    spaces: dict[str, SpaceInfo]
    images_failed: int = 0
    lexical: dict | None = None  # LexicalIndex.describe(): tokenizer and BM25 settings; None: no lexical index
    vitrina_version: str = ""
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    format_version: int = FORMAT_VERSION
    version: str = field(default_factory=new_version)  # new at every write; served as index_version
    encoder_files: dict[str, dict[str, str]] = field(default_factory=dict)  # kept encoder role -> file -> sha256

    def space(self, name: str) -> SpaceInfo:
        if name not in self.spaces:
            have = ", ".join(self.spaces) or "none"
            raise IndexStoreError(f"this index has no {name} vectors (it has: {have})")
        return self.spaces[name]

    def check_encoder(self, space: str, encoder_name: str, dim: int) -> None:
        """Refuse an encoder other than the one that built `space`: its vectors would be nonsense."""
        info = self.space(space)
        if encoder_name != info.encoder or dim != info.dim:
            raise IndexStoreError(
                f"the {space} vectors of this index were made by {info.encoder} ({info.dim}-d); "
                f"the encoder given is {encoder_name} ({dim}-d). Search with the same model, or re-index."
            )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def stamp(self) -> None:
        """Give the manifest a new version: its index directory's content is about to change."""
        self.version = new_version()

    def save(self, directory: Path) -> None:
        self.stamp()
        (directory / MANIFEST_FILE).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, directory: Path) -> "IndexManifest":
        path = directory / MANIFEST_FILE
        if not path.is_file():
            raise IndexStoreError(f"{directory} is not a Vitrina index (no {MANIFEST_FILE}); build one with `vitrina index`")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise IndexStoreError(f"{path} is damaged: {exc}") from None
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexStoreError(
                f"{path} has index format {version}; this Vitrina reads format {FORMAT_VERSION}. Re-index the catalog."
            )
        data.setdefault("version", data.get("created_at", ""))  # written before versions existed
        try:
            data["spaces"] = {k: SpaceInfo(**v) for k, v in data["spaces"].items()}
            return cls(**data)
        except (KeyError, TypeError) as exc:
            raise IndexStoreError(f"{path} is damaged: {exc}") from None
