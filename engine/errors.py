"""Exceptions raised by the engine, and the set of errors the CLI reports without a traceback."""

from vitrina.encoders.errors import EncoderError
from vitrina.index.errors import IndexStoreError


class CatalogError(Exception):
    """A catalog file cannot be read as products; the message names the file, line or row, and field."""


class QueryError(Exception):
    """A query (text, image or id) cannot be answered as given."""


USER_ERRORS: tuple[type[Exception], ...] = (CatalogError, QueryError, EncoderError, IndexStoreError)
