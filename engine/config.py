"""VitrinaConfig: the one typed configuration object passed down to every layer."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from vitrina.encoders.config import EncoderConfig
from vitrina.encoders.image_policy import ImageConfig
from vitrina.encoders.factory import DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL
from vitrina.engine.data.catalog import CatalogConfig
from vitrina.engine.errors import QueryError
from vitrina.index.config import IndexConfig
from vitrina.index.filters import FilterConfig
from vitrina.index.hybrid import HybridConfig
from vitrina.errors import Param


USER_KEY_ENV = "VITRINA_USER_KEY"


@dataclass(frozen=True)
class ShopperConfig:
    """Shoppers' data: the secret that pseudonymises user ids, event retention and snapshot cadence.

    user_key: the HMAC secret (from VITRINA_USER_KEY); None: the root's own events/user.key, created at
    first use. max_age_days: events older than this leave the log and the model at snapshot time.
    """

    user_key: str | None = field(default=None, repr=False)  # never printed or logged
    max_age_days: float | None = None
    snapshot_every_s: float = 30.0  # a server snapshots its behaviour state this often (when events came)
    snapshot_every_events: int = 5_000  # ... or after this many events, whichever comes first

    def __post_init__(self) -> None:
        if self.user_key is not None and len(self.user_key) < 16:
            raise QueryError(f"{USER_KEY_ENV} must be at least 16 characters long")
        if self.max_age_days is not None and not 0 < self.max_age_days < float("inf"):
            raise QueryError("{max_age} must be a positive number of days, got {days}",
                             max_age=Param("events_max_age"), days=self.max_age_days)
        if self.snapshot_every_s <= 0 or self.snapshot_every_events < 1:
            raise QueryError("the snapshot interval and event count must be positive")

    @classmethod
    def with_environment_key(cls, **settings: object) -> "ShopperConfig":
        """Settings with the user key taken from VITRINA_USER_KEY when none is given (the one place it is read)."""
        if settings.get("user_key") is None:
            settings["user_key"] = os.environ.get(USER_KEY_ENV) or None
        return cls(**settings)  # type: ignore[arg-type]


@dataclass(frozen=True)
class VitrinaConfig:
    """Models, catalog fields, encoder and index settings. image_model None skips images.

    images: where catalog images may be read from (extra folders, private URL networks) and the byte cap.
    """

    text_model: str = DEFAULT_TEXT_MODEL
    image_model: str | None = DEFAULT_IMAGE_MODEL
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    hybrid: HybridConfig = field(default_factory=HybridConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    images: ImageConfig = field(default_factory=ImageConfig)
    shoppers: ShopperConfig = field(default_factory=ShopperConfig)
    progress: bool = True


@dataclass(frozen=True)
class RecommendConfig:
    """How a known shopper's products are scored (defaults measured on H&M, benchmarks/RESULTS.md)."""

    behaviour_weight: float = 0.0  # share of the ALS affinity; the rest is content affinity
    popularity_weight: float = 0.15  # added on top, times the scaled log popularity
    half_life_days: float | None = 60.0  # None: every past product counts alike
    sharpness: float = 3.0
    history: int = 50  # the shopper's most recent products that count
    neighbours: int = 100  # candidates per history product
    best_sellers: int = 200  # candidates from popularity (and as many from the behaviour model)
    # re-buys (only when the shopper's own products are included, `include_seen`): each own product adds
    # rebuy_weight x (its summed event weight ^ rebuy_count_power) x 0.5 ^ (days since its last event /
    # rebuy_half_life_days), scaled by the shopper's highest; chosen on Online Retail windows (RESULTS.md)
    rebuy_weight: float = 4.0
    rebuy_half_life_days: float | None = 120.0  # None: no decay
    rebuy_count_power: float = 1.0  # 0: how often does not count, only how recently
    # the shopper's own products: True / False, or None to decide from the shop's own log: included when
    # at least `seen_share` of its events come back to a (shopper, product) pair a day or more after the
    # pair's previous one. Both shared logs re-buy (Online Retail 0.28, H&M 0.05) and both gain from own
    # products on their validation windows (RESULTS.md): the floor only leaves out a log with ~no re-buys
    include_seen: bool | None = None
    seen_share: float = 0.02
    # popularity in the blend, the candidates and an unknown shopper's best sellers: log(1 + shoppers of
    # the product) ("shoppers") or log(1 + its summed event weight) ("weight", purchase lines in a
    # purchase log); each pair counting 0.5 ^ (days since its last event / popularity_half_life_days)
    popularity_by: Literal["shoppers", "weight"] = "shoppers"
    popularity_half_life_days: float | None = None  # None: every pair counts alike, however old

    def __post_init__(self) -> None:
        if not 0.0 <= self.seen_share <= 1.0:
            raise QueryError(f"seen_share must be in [0, 1], got {self.seen_share}")
        if self.popularity_by not in ("shoppers", "weight"):
            raise QueryError(f"popularity_by must be shoppers or weight, got {self.popularity_by!r}")
        if self.popularity_half_life_days is not None and self.popularity_half_life_days <= 0:
            raise QueryError(f"the popularity half-life must be a positive number of days, got {self.popularity_half_life_days}")
        if self.rebuy_weight < 0.0 or self.rebuy_count_power < 0.0:
            raise QueryError("the re-buy weight and count power must be >= 0")
        if self.rebuy_half_life_days is not None and self.rebuy_half_life_days <= 0:
            raise QueryError(f"the re-buy half-life must be a positive number of days, got {self.rebuy_half_life_days}")
        if not 0.0 <= self.behaviour_weight <= 1.0 or self.popularity_weight < 0.0:
            raise QueryError("the behaviour weight must be in [0, 1] and the popularity weight >= 0")
        if self.half_life_days is not None and self.half_life_days <= 0:
            raise QueryError(f"the half-life must be a positive number of days, got {self.half_life_days}")
        if self.sharpness <= 0 or min(self.history, self.neighbours, self.best_sellers) < 1:
            raise QueryError("sharpness must be > 0, and history, neighbours and best sellers >= 1")
