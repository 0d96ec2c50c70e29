"""Text and image encoders that embed products and queries as L2-normalised float32 vectors."""

from vitrina.encoders.base import Encoder, l2_normalize
from vitrina.encoders.config import EncoderConfig
from vitrina.encoders.errors import EncoderError, ImageLoadError
from vitrina.encoders.image_policy import ImageConfig
from vitrina.encoders.factory import (
    DEFAULT_IMAGE_MODEL,
    DEFAULT_TEXT_MODEL,
    load_image_encoder,
    load_image_space_text_encoder,
    load_text_encoder,
)

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
