"""Exceptions raised by encoders, with messages a user can act on."""


class EncoderError(Exception):
    """A model could not be found, loaded or run."""


class ImageLoadError(EncoderError):
    """An image could not be read or decoded."""
