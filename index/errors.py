"""Exceptions raised by the index layer."""


class IndexStoreError(Exception):
    """An index directory is missing, damaged, or does not fit what was asked of it."""
