"""Text and image encoders that embed products and queries as L2-normalised float32 vectors."""

from encoders.base import Encoder, l2_normalize
from encoders.config import EncoderConfig
from encoders.errors import EncoderError, ImageLoadError
from encoders.image_policy import ImagePolicy
from encoders.factory import (
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
    "ImagePolicy",
    "l2_normalize",
    "load_image_encoder",
    "load_image_space_text_encoder",
    "load_text_encoder",
]
