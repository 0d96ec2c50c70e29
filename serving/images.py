"""Serving a product's local image: only a regular file inside the index's image folders that decodes as an
image, with the content type of its decoded format. Refusals never name server paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from vitrina.encoders.errors import ImageLoadError
from vitrina.encoders.image_io import image_type, read_local_image
from vitrina.encoders.image_policy import ImageConfig


@dataclass
class ImageRefused(Exception):
    """The image cannot be served: an HTTP status and a reason without server paths."""

    status: int
    reason: str


def served_image(source: str, roots: Sequence[Path], max_pixels: int, max_aspect: float) -> tuple[bytes, str]:
    """(bytes, MIME type) of a product's local image, re-checked at serve time; raises ImageRefused."""
    if not roots:
        raise ImageRefused(403, "this index records no image folders to serve from; re-index it")
    policy = ImageConfig().confined_to(roots)
    try:
        path = policy.check_local(source)
    except ImageLoadError:
        raise ImageRefused(403, "it lies outside the index's image folders") from None
    if not path.exists():
        raise ImageRefused(404, "it is missing from the image folders")
    try:
        data = read_local_image(str(path), policy)
    except ImageLoadError:
        raise ImageRefused(403, "it is not a regular file within the size limit") from None
    try:
        return data, image_type(data, "the image", max_pixels, max_aspect)
    except ImageLoadError:
        raise ImageRefused(403, "it is not a readable image") from None
