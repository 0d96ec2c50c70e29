"""Reading product images from paths or http(s) URLs into RGB PIL images, within an ImageConfig's limits."""

from __future__ import annotations

import io
import math
import os
import re
import stat
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

from vitrina.encoders.errors import ImageLoadError
from vitrina.encoders.image_policy import MAX_IMAGE_BYTES, ImageConfig

MAX_DOWNLOAD_BYTES = MAX_IMAGE_BYTES  # kept for callers of the old name
MAX_ASPECT_RATIO = 20.0  # longer side / shorter side; beyond it an image is refused (a 1x20000 strip is no photo)
WANTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")


@cache
def image_formats() -> tuple[str, ...]:
    """The decoders tried (AVIF where this Pillow has it); none of the exotic ones. Pillow's plugins load
    on the first call, not at import, so a text search never pays for them."""
    Image.init()
    return tuple(f for f in WANTED_FORMATS if f in Image.OPEN)
_MIME = {"MPO": "image/jpeg"}  # phones' multi-picture JPEGs are served as the JPEG they start with
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def read_local_image(source: str, policy: ImageConfig) -> bytes:
    """The bytes of a regular file inside the policy's roots, at most policy.max_bytes; raises ImageLoadError.

    Opened non-blocking (a FIFO cannot hang the reader) and checked on the open descriptor (a device such
    as /dev/zero or a directory is refused, and the file cannot be swapped between check and read).
    """
    path = policy.check_local(source)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ImageLoadError(f"image file not found: {source}") from None
    except OSError as exc:
        raise ImageLoadError(f"could not read image {source}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageLoadError(f"refused image {source}: not a regular file")
        if info.st_size > policy.max_bytes:
            raise ImageLoadError(f"image {source} is larger than {_mib(policy.max_bytes)}")
        data = _read_at_most(fd, policy.max_bytes + 1)
    except OSError as exc:
        raise ImageLoadError(f"could not read image {source}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > policy.max_bytes:
        raise ImageLoadError(f"image {source} is larger than {_mib(policy.max_bytes)}")
    return data


def _read_at_most(fd: int, limit: int) -> bytes:
    """Up to `limit` bytes of an open file descriptor."""
    chunks, left = [], limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB"


def read_image_bytes(source: str, timeout_s: float, policy: ImageConfig | None = None) -> bytes:
    """The bytes of an image file or http(s) URL, as the policy allows (default: any local file, public
    URLs only); raises ImageLoadError."""
    policy = policy or ImageConfig()
    if is_url(source):
        from vitrina.encoders.url_fetch import fetch_url  # http.client and ssl: only for URLs

        return fetch_url(source, policy, timeout_s)
    return read_local_image(source, policy)


def _opened(data: bytes, label: str, max_pixels: int, max_aspect: float) -> Image.Image:
    """The image header parsed, its size checked against the pixel and aspect-ratio limits (nothing decoded)."""
    img = Image.open(io.BytesIO(data), formats=image_formats())
    w, h = img.size
    if w * h > max_pixels:
        raise ImageLoadError(f"{label} has {w}x{h} pixels, more than the limit of {max_pixels:,}")
    if w < 1 or h < 1 or max(w, h) / min(w, h) > max_aspect:
        raise ImageLoadError(f"{label} is {w}x{h} pixels, an aspect ratio beyond the limit of 1:{max_aspect:g}")
    return img


def _decode_errors(label: str, exc: Exception) -> ImageLoadError:
    if isinstance(exc, UnidentifiedImageError):
        return ImageLoadError(f"{label} is not a readable image: not a {', '.join(image_formats())} file")
    return ImageLoadError(f"{label} is not a readable image: {_OBJECT_REPR.sub('the data', str(exc))}")


_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning)


def draft_size(size: tuple[int, int], shorter_side: int) -> tuple[int, int]:
    """The smallest size of an image's shape whose shorter side is still `shorter_side` (JPEG draft requests)."""
    w, h = size
    scale = shorter_side / min(w, h)
    return max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))


def _decoded(data: bytes, label: str, max_pixels: int, max_aspect: float, draft: bool = False,
             draft_to: int | None = None) -> Image.Image:
    """The image fully decoded after its size checks (draft: JPEGs at 1/8 scale; draft_to: JPEGs at the
    smallest DCT scale whose shorter side is still >= draft_to); raises ImageLoadError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = _opened(data, label, max_pixels, max_aspect)
            if draft:
                img.draft("RGB", (64, 64))
            elif draft_to is not None:
                img.draft("RGB", draft_size(img.size, draft_to))
            img.load()
        return img
    except ImageLoadError:
        raise
    except _DECODE_ERRORS as exc:
        raise _decode_errors(label, exc) from exc


def decode_image(data: bytes, label: str, max_pixels: int, max_aspect: float = MAX_ASPECT_RATIO,
                 draft_to: int | None = None) -> Image.Image:
    """Decode bytes fully into an RGB image, refusing truncated files, pixel bombs and absurd aspect ratios.

    draft_to: a JPEG at least twice that size on its shorter side is decoded at a reduced DCT scale (1/2,
    1/4 or 1/8) that keeps the shorter side >= draft_to; for a model input of that size (a 2000x3000 photo
    for 224: 4x less decoding CPU, image vector cosine 0.999 to the full decode). None: full size.
    """
    img = _decoded(data, label, max_pixels, max_aspect, draft_to=draft_to)
    try:
        return ImageOps.exif_transpose(img).convert("RGB")
    except _DECODE_ERRORS as exc:
        raise _decode_errors(label, exc) from exc


def image_type(data: bytes, label: str, max_pixels: int, max_aspect: float = MAX_ASPECT_RATIO) -> str:
    """The MIME type of bytes that decode as an image (JPEGs decoded at reduced scale, enough to prove the
    whole file decodes); raises ImageLoadError."""
    img = _decoded(data, label, max_pixels, max_aspect, draft=True)
    return _MIME.get(img.format or "", None) or Image.MIME.get(img.format or "", "application/octet-stream")


def load_image(source: str, timeout_s: float = 10.0, max_pixels: int = 40_000_000,
               policy: ImageConfig | None = None, max_aspect: float = MAX_ASPECT_RATIO) -> Image.Image:
    """Load one image from a path or an http(s) URL; raises ImageLoadError."""
    return decode_image(read_image_bytes(source, timeout_s, policy), source, max_pixels, max_aspect)


def load_images(
    sources: Sequence[str], timeout_s: float = 10.0, max_pixels: int = 40_000_000, threads: int = 4,
    policy: ImageConfig | None = None, max_aspect: float = MAX_ASPECT_RATIO,
) -> list[Image.Image | ImageLoadError]:
    """Load many images in parallel; each slot holds the image or the error that stopped it."""

    def one(source: str) -> Image.Image | ImageLoadError:
        try:
            return load_image(source, timeout_s, max_pixels, policy, max_aspect)
        except ImageLoadError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, sources))


def fit_square(img: Image.Image, size: int, fill: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """The image scaled so its longer side is `size`, centred on a white size x size square (product shots
    keep their whole outline). Work and memory are bounded by the output, whatever the input's shape."""
    img = img if img.mode == "RGB" else img.convert("RGB")  # convert() copies even an RGB image
    w, h = img.size
    scale = size / max(w, h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    if new_w == new_h:
        return img
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(img, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas
