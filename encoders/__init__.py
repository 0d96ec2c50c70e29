"""Text and image encoders that embed products and queries as L2-normalised float32 vectors.

The names below are imported on first use (PEP 562), so importing one light module of this package
(`vitrina.encoders.errors`, `vitrina.encoders.config`) loads no runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitrina.lazy import lazy_names

_WHERE = {
    "DEFAULT_IMAGE_MODEL": "vitrina.encoders.factory",
    "DEFAULT_TEXT_MODEL": "vitrina.encoders.factory",
    "Encoder": "vitrina.encoders.base",
    "EncoderConfig": "vitrina.encoders.config",
    "EncoderError": "vitrina.encoders.errors",
    "ImageLoadError": "vitrina.encoders.errors",
    "ImageConfig": "vitrina.encoders.image_policy",
    "l2_normalize": "vitrina.encoders.base",
    "load_image_encoder": "vitrina.encoders.factory",
    "load_image_space_text_encoder": "vitrina.encoders.factory",
    "load_text_encoder": "vitrina.encoders.factory",
}

if TYPE_CHECKING:
    from vitrina.encoders.base import Encoder, l2_normalize
    from vitrina.encoders.config import EncoderConfig
    from vitrina.encoders.errors import EncoderError, ImageLoadError
    from vitrina.encoders.factory import (DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL, load_image_encoder,
                                          load_image_space_text_encoder, load_text_encoder)
    from vitrina.encoders.image_policy import ImageConfig


__getattr__ = lazy_names(__name__, _WHERE, globals())


__all__ = [
    "DEFAULT_IMAGE_MODEL",
    "DEFAULT_TEXT_MODEL",
    "Encoder",
    "EncoderConfig",
    "EncoderError",
    "ImageLoadError",
    "ImageConfig",
    "l2_normalize",
    "load_image_encoder",
    "load_image_space_text_encoder",
    "load_text_encoder",
]
