"""VitrinaConfig: the one typed configuration object passed down to every layer."""

from __future__ import annotations

from dataclasses import dataclass, field

from encoders.config import EncoderConfig
from encoders.image_policy import ImagePolicy
from encoders.factory import DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL
from engine.catalog import CatalogFields
from engine.errors import QueryError
from index.config import IndexConfig
from index.filters import FilterFields
from index.rank_fusion import HybridSettings


@dataclass(frozen=True)
class VitrinaConfig:
    """Models, catalog fields, encoder and index settings. image_model None skips images.

    images: where catalog images may be read from (extra folders, private URL networks) and the byte cap.
    """

    text_model: str = DEFAULT_TEXT_MODEL
    image_model: str | None = DEFAULT_IMAGE_MODEL
    catalog: CatalogFields = field(default_factory=CatalogFields)
    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    hybrid: HybridSettings = field(default_factory=HybridSettings)
    filters: FilterFields = field(default_factory=FilterFields)
    images: ImagePolicy = field(default_factory=ImagePolicy)
    progress: bool = True


@dataclass(frozen=True)
class RecommendSettings:
    """How a known shopper's products are scored (defaults measured on H&M, benchmarks/RESULTS.md)."""

    behaviour_weight: float = 0.0  # share of the ALS affinity; the rest is content affinity
    popularity_weight: float = 0.15  # added on top, times the scaled log popularity
    half_life_days: float | None = 60.0  # None: every past product counts alike
    sharpness: float = 3.0
    history: int = 50  # the shopper's most recent products that count
    neighbours: int = 100  # candidates per history product
    best_sellers: int = 200  # candidates from popularity (and as many from the behaviour model)

    def __post_init__(self) -> None:
        if not 0.0 <= self.behaviour_weight <= 1.0 or self.popularity_weight < 0.0:
            raise QueryError("the behaviour weight must be in [0, 1] and the popularity weight >= 0")
        if self.half_life_days is not None and self.half_life_days <= 0:
            raise QueryError(f"the half-life must be a positive number of days, got {self.half_life_days}")
        if self.sharpness <= 0 or min(self.history, self.neighbours, self.best_sellers) < 1:
            raise QueryError("sharpness must be > 0, and history, neighbours and best sellers >= 1")
