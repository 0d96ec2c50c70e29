"""VitrinaConfig: the one typed configuration object passed down to every layer."""

from __future__ import annotations

from dataclasses import dataclass, field

from encoders.config import EncoderConfig
from encoders.factory import DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL
from engine.catalog import CatalogFields
from index.config import IndexConfig
from index.rank_fusion import HybridSettings


@dataclass(frozen=True)
class VitrinaConfig:
    """Models, catalog fields, encoder and index settings. image_model None skips images."""

    text_model: str = DEFAULT_TEXT_MODEL
    image_model: str | None = DEFAULT_IMAGE_MODEL
    catalog: CatalogFields = field(default_factory=CatalogFields)
    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    hybrid: HybridSettings = field(default_factory=HybridSettings)
    progress: bool = True
