"""Exceptions raised by the index layer."""

from vitrina.errors import VitrinaError


class IndexStoreError(VitrinaError):
    """An index directory is missing, damaged, or does not fit what was asked of it."""
