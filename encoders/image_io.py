"""Reading product images from paths or http(s) URLs into RGB PIL images."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageOps

from encoders.errors import ImageLoadError

MAX_DOWNLOAD_BYTES = 30 * 1024 * 1024


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def read_image_bytes(source: str, timeout_s: float) -> bytes:
    """The bytes of an image file or http(s) URL; raises ImageLoadError."""
    if is_url(source):
        try:
            with urllib.request.urlopen(source, timeout=timeout_s) as resp:  # noqa: S310 (http/https only)
                data = resp.read(MAX_DOWNLOAD_BYTES + 1)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ImageLoadError(f"could not download {source}: {exc}") from exc
        if len(data) > MAX_DOWNLOAD_BYTES:
            raise ImageLoadError(f"{source} is larger than {MAX_DOWNLOAD_BYTES // 2**20} MiB")
        return data
    try:
        return Path(source).read_bytes()
    except FileNotFoundError:
        raise ImageLoadError(f"image file not found: {source}") from None
    except OSError as exc:
        raise ImageLoadError(f"could not read image {source}: {exc}") from exc


def decode_image(data: bytes, label: str, max_pixels: int) -> Image.Image:
    """Decode bytes fully into an RGB image, refusing truncated files and pixel bombs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > max_pixels:
                raise ImageLoadError(
                    f"{label} has {img.width}x{img.height} pixels, more than the limit of {max_pixels:,}"
                )
            img.load()
        img = ImageOps.exif_transpose(img)
        return img.convert("RGB")
    except ImageLoadError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(f"{label} is not a readable image: {exc}") from exc


def load_image(source: str, timeout_s: float = 10.0, max_pixels: int = 40_000_000) -> Image.Image:
    """Load one image from a path or an http(s) URL; raises ImageLoadError."""
    return decode_image(read_image_bytes(source, timeout_s), source, max_pixels)


def load_images(
    sources: Sequence[str], timeout_s: float = 10.0, max_pixels: int = 40_000_000, threads: int = 4
) -> list[Image.Image | ImageLoadError]:
    """Load many images in parallel; each slot holds the image or the error that stopped it."""

    def one(source: str) -> Image.Image | ImageLoadError:
        try:
            return load_image(source, timeout_s, max_pixels)
        except ImageLoadError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, sources))


def pad_to_square(img: Image.Image, fill: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Centre the image on a square canvas (product shots keep their whole outline)."""
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas
