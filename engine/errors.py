"""Exceptions raised by the engine, and the set of errors the CLI reports without a traceback."""

from vitrina.encoders.errors import EncoderError
from vitrina.errors import VitrinaError
from vitrina.index.errors import IndexStoreError


class CatalogError(VitrinaError):
    """A catalog file cannot be read as products; the message names the file, line or row, and field."""


class MissingColumnError(CatalogError):
    """An events file lacks a column; `setting` names the EventFieldConfig field that chose the column."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class QueryError(VitrinaError):
    """A query (text, image or id) cannot be answered as given."""


class ArgumentError(QueryError, ValueError):
    """An argument has a value or type the call cannot use; the message names the parameter (`Param`)."""


USER_ERRORS: tuple[type[Exception], ...] = (CatalogError, QueryError, EncoderError, IndexStoreError)
