"""Exceptions raised by encoders, with messages a user can act on."""

from vitrina.errors import VitrinaError


class EncoderError(VitrinaError):
    """A model could not be found, loaded or run."""


class ImageLoadError(EncoderError):
    """An image could not be read or decoded."""
