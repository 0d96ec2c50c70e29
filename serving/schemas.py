"""The request and response bodies of the HTTP API (pydantic models; they name the OpenAPI schemas)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Hit(BaseModel):
    """One product: its id, its score, and the catalog's other columns."""

    model_config = ConfigDict(extra="allow")
    id: str
    score: float
    variants: list[str] | None = Field(
        default=None, description="on indexes with product groups: the ids of the other products of its group")
    matched_image: str | None = Field(
        default=None, description="on indexes with several images per product: the image that matched (as the catalog "
                                  "names it) for image searches (similar, text -> image); null for text hits")
    matched_image_index: int | None = Field(
        default=None, description="with matched_image: its ordinal among the product's images (0: the first)")


class BoughtTogetherHit(Hit):
    """One product bought with the asked one: from co-purchases (with their count) or, filling up, similar."""

    source: Literal["co-purchase", "similar"] = Field(
        description="co-purchase: bought in the same baskets; similar: like the product (filling a short list)")
    co_purchases: int | None = Field(default=None, description="co-purchase hits: the baskets holding both products")


class BoughtTogetherResults(BaseModel):
    results: list[BoughtTogetherHit]
    index_version: str


class PriceRange(BaseModel):
    min: float
    max: float


class Results(BaseModel):
    results: list[Hit]
    index_version: str
    personalised: bool | None = None
    corrected_query: str | None = None  # the query as searched, where typos were corrected ("did you mean")
    facets: dict[str, dict[str, int]] | None = Field(
        default=None, description="with facets=: each column's value counts over the matched set, most frequent first")
    price: PriceRange | None = Field(default=None, description="with facets=: the price range of the matched set")
    total: int | None = Field(default=None, description="with facets=: how many products the matched set holds")
    rules_fired: list[str] | None = Field(
        default=None, description="the ids of the merchandising rules that acted on the results, when any did")
    suggestions: list[str] | None = Field(
        default=None, description="only when results is empty because the query fell below the relevance floor: "
                                  "catalog words to try")


class EventIn(BaseModel):
    user_id: str = Field(min_length=1, max_length=256)
    product_id: str = Field(min_length=1, max_length=256)
    event: Literal["view", "click", "cart", "purchase"] | None = None
    timestamp: str | float = Field(description="ISO 8601 time (UTC when naive) or epoch seconds")
    weight: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    basket_id: str | None = Field(default=None, max_length=256, description=(
        "the order, invoice or checkout session: products of one basket count as bought together (without it: "
        "a shopper's carts and purchases on one UTC day)"))
    session_id: str | None = Field(default=None, max_length=256, description="used as the basket when basket_id is absent")


class EventsIn(BaseModel):
    events: list[EventIn] = Field(min_length=1)


class EventsOut(BaseModel):
    accepted: int
    rejected: int
    problems: dict[str, int]
    examples: list[str]
    users: int
    products_with_vectors: int
    index_version: str
    duplicates: int = Field(0, description="events already applied before (same event id), skipped")


class ForgetOut(BaseModel):
    user_found: bool
    events_removed: int
    versions_refit: list[str]
    notes: list[str]
    index_version: str


class ReloadIn(BaseModel):
    path: str | None = Field(default=None, description="another index directory to serve (default: the current one); "
                                                     "inside the served index's folder or a --reload-root")


class ReloadOut(BaseModel):
    index_version: str
    previous_version: str | None
    path: str
    seconds: float
