"""A colour descriptor for product photos: a centre-weighted CIELAB histogram of the non-background pixels.

The frozen CNN image vectors say little about colour, while shop titles name it. Every index with images
stores this descriptor per photo (the "colour" space, computed from the same decoded photo as the CNN
vector), and `vitrina train` joins it to the image vector before the shared-space image head (issue 18:
fashion text -> image recall@10 on held-out products 0.41 -> 0.48, benchmarks/RESULTS.md). The
descriptor is L2-normalised after a square root (Hellinger), so the cosine of two descriptors is the
Bhattacharyya coefficient of their histograms, and a weighted concatenation [cnn, sqrt(w) * colour]
scores cnn cosine + w * colour cosine in one inner product. `ColourConfig.name` (version and settings)
is recorded as the colour space's encoder, so descriptors made another way are never mixed.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

_SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]],
    dtype=np.float32,
)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
COLOUR_SPACE = "colour"  # the index space holding one descriptor per photo, same rows as "image"
COLOUR_VERSION = 1  # bump when the computation changes: stored descriptors of another version are recomputed


@dataclass(frozen=True)
class ColourConfig:
    """How the descriptor is computed.

    bins: histogram bins along L*, a*, b* (joint histogram, L*a*b* ranges 0-100, -80..80, -80..80).
    size: the photo is resized to size x size first (bounds the work whatever the input).
    background: a pixel whose R, G and B are all >= this is background (white studio backdrop) and is
        left out; None keeps every pixel. If under `min_foreground` of the weight is left, all pixels count.
    sigma: a Gaussian weight centred on the image, as a share of its side (None: uniform weight).
    soft: spread each pixel over neighbouring bins (trilinear) instead of its nearest bin.
    """

    bins: tuple[int, int, int] = (4, 8, 8)
    size: int = 64
    background: int | None = 245
    sigma: float | None = 0.3
    min_foreground: float = 0.02
    soft: bool = True

    def __post_init__(self) -> None:
        if len(self.bins) != 3 or min(self.bins) < 1 or self.size < 4:
            raise ValueError(f"colour descriptor: bins must be 3 positive counts and size >= 4, got {self.bins}, {self.size}")
        if self.background is not None and not 0 <= self.background <= 255:
            raise ValueError(f"colour descriptor: background must be in [0, 255], got {self.background}")
        if (self.sigma is not None and self.sigma <= 0) or not 0.0 <= self.min_foreground < 1.0:
            raise ValueError("colour descriptor: sigma must be > 0 and min_foreground in [0, 1)")

    @property
    def dim(self) -> int:
        """Length of the descriptor."""
        return int(np.prod(self.bins))

    @property
    def name(self) -> str:
        """The descriptor's version and settings, recorded as the colour space's encoder."""
        return f"colour-lab-v{COLOUR_VERSION}:" + json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    def to_json(self) -> dict:
        return {**asdict(self), "bins": list(self.bins)}

    @classmethod
    def from_json(cls, data: dict) -> "ColourConfig":
        """The config a manifest or head file recorded (ValueError when it is not one)."""
        try:
            return cls(**{**data, "bins": tuple(data["bins"])})
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a colour descriptor config: {exc}") from None

    @classmethod
    def from_name(cls, name: str) -> "ColourConfig":
        """The config of a recorded `name`; ValueError when it is another version or not a descriptor name."""
        prefix = f"colour-lab-v{COLOUR_VERSION}:"
        if not name.startswith(prefix):
            raise ValueError(f"{name!r} is not a version-{COLOUR_VERSION} colour descriptor")
        try:
            return cls.from_json(json.loads(name[len(prefix):]))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name!r} is not a colour descriptor name: {exc}") from None


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB values in [0, 255] (..., 3) -> CIELAB (..., 3) under D65."""
    c = np.asarray(rgb, dtype=np.float32) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _WHITE_D65
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def _pixel_weights(rgb: np.ndarray, config: ColourConfig) -> np.ndarray:
    """Per-pixel weight: centre Gaussian times foreground mask (falling back to all pixels)."""
    h, w, _ = rgb.shape
    spatial = _spatial_weights(h, w, config.sigma)
    if config.background is None:
        return spatial
    darkest = np.minimum(np.minimum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])  # = rgb.min(axis=-1), faster
    foreground = spatial * (darkest < config.background)
    if foreground.sum() < config.min_foreground * spatial.sum():
        return spatial
    return foreground


@functools.lru_cache(maxsize=16)
def _spatial_weights(h: int, w: int, sigma: float | None) -> np.ndarray:
    """The centre Gaussian over an h x w grid (ones when sigma is None); cached, read-only."""
    if sigma is None:
        spatial = np.ones((h, w), dtype=np.float32)
    else:
        ys = (np.arange(h, dtype=np.float32) + 0.5) / h - 0.5
        xs = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
        spatial = np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2))
    spatial.setflags(write=False)
    return spatial


def _histogram(lab: np.ndarray, weights: np.ndarray, config: ColourConfig) -> np.ndarray:
    """Joint L*a*b* histogram of weighted pixels, hard or trilinear soft binning."""
    lows = np.array([0.0, -80.0, -80.0], dtype=np.float32)
    spans = np.array([100.0, 160.0, 160.0], dtype=np.float32)
    bins = np.array(config.bins)
    pos = np.clip((lab.reshape(-1, 3) - lows) / spans, 0.0, 1.0 - 1e-6) * bins  # continuous bin coordinate
    w = weights.reshape(-1)
    hist = np.zeros(config.dim, dtype=np.float64)
    if not config.soft:
        idx = pos.astype(np.int64)
        return np.bincount(np.ravel_multi_index(idx.T, config.bins), weights=w, minlength=config.dim)
    centred = pos - 0.5
    base = np.floor(centred).astype(np.int64)
    frac = (centred - base).astype(np.float32)
    # Per axis, the lower and upper neighbouring bin (clipped) with their shares; the 8 corners (bit d of the
    # corner number: upper along axis d) are then products of per-axis arrays, in corner order, so bincount
    # adds the same terms in the same order as a joint 8 x P x 3 formulation (identical sums, ~6x faster).
    strides = (bins[1] * bins[2], bins[2], 1)
    index = [(np.clip(base[:, d], 0, bins[d] - 1) * strides[d], np.clip(base[:, d] + 1, 0, bins[d] - 1) * strides[d])
             for d in range(3)]
    shares = [(1.0 - frac[:, d], frac[:, d]) for d in range(3)]
    flat = np.empty((8, len(w)), dtype=np.int64)
    weight = np.empty((8, len(w)), dtype=np.float32)
    for corner in range(8):
        bit = [(corner >> d) & 1 for d in range(3)]
        flat[corner] = index[0][bit[0]] + index[1][bit[1]] + index[2][bit[2]]
        weight[corner] = shares[0][bit[0]] * shares[1][bit[1]] * shares[2][bit[2]] * w
    hist += np.bincount(flat.reshape(-1), weights=weight.reshape(-1), minlength=config.dim)
    return hist


def colour_descriptor(image: Image.Image, config: ColourConfig = ColourConfig()) -> np.ndarray:
    """One photo -> its colour descriptor: float32 of length config.dim, unit L2 norm."""
    small = (image if image.mode == "RGB" else image.convert("RGB")).resize((config.size, config.size), Image.Resampling.BILINEAR)
    rgb = np.asarray(small, dtype=np.float32)
    hist = _histogram(srgb_to_lab(rgb), _pixel_weights(rgb, config), config)
    root = np.sqrt(hist / max(hist.sum(), 1e-12))
    return (root / max(float(np.linalg.norm(root)), 1e-12)).astype(np.float32)


def colour_descriptors(images: list[Image.Image], config: ColourConfig = ColourConfig()) -> np.ndarray:
    """Descriptors of many photos, one row each (N x config.dim float32)."""
    if not images:
        return np.zeros((0, config.dim), dtype=np.float32)
    return np.stack([colour_descriptor(img, config) for img in images])


def fuse(cnn: np.ndarray, colour: np.ndarray, weight: float) -> np.ndarray:
    """Rows [cnn, sqrt(weight) * colour]: their inner product is cnn cosine + weight * colour cosine."""
    return np.hstack([cnn, np.sqrt(weight) * colour]).astype(np.float32)
