"""Settings shared by every encoder."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EncoderConfig:
    """How encoders run: device, batch size, and whether hubs may be contacted.

    device: "cuda", "cpu" or None to pick CUDA when present.
    offline: never contact a model hub; hub names must already be in the local cache.
    """

    device: str | None = None
    batch_size: int = 32
    offline: bool = False
    max_text_length: int | None = None
    image_timeout_s: float = 10.0
    image_max_pixels: int = 40_000_000

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
