"""The errors Vitrina raises on purpose, and how each front end words the parameters they name.

Every error a user can act on is a `VitrinaError`. A message that names a parameter is written once,
with a placeholder per parameter, and each front end words it in its own terms::

    raise QueryError("{mode} needs a lexical index, and this one has none; re-index the catalog",
                     mode=Param("mode", "hybrid"))

    str(exc)                  # Python:  mode='hybrid' needs a lexical index, ...
    exc.worded(CLI)           # CLI:     --mode hybrid needs a lexical index, ...
    exc.worded(HTTP)          # HTTP:    mode=hybrid needs a lexical index, ...

Placeholders use `str.format` syntax; fields that are not a `Param` are ordinary values. A message
given without fields is kept as it is (braces in a path need no escaping).
"""

from __future__ import annotations

import os

from dataclasses import dataclass, field
from typing import Any, Mapping

_NO_VALUE: Any = object()


@dataclass(frozen=True)
class Param:
    """A parameter named in an error message, with the value it had (or should have) when one is shown."""

    name: str  # the Python parameter name, e.g. "mode" or "text_fields"
    value: Any = _NO_VALUE

    @property
    def has_value(self) -> bool:
        return self.value is not _NO_VALUE


@dataclass(frozen=True)
class Wording:
    """How one front end spells parameters: `--mode hybrid` (CLI), `mode=hybrid` (HTTP), `mode='hybrid'` (Python).

    prefix and dashes make the name (`--` and text_fields -> text-fields for flags); joiner goes between
    name and value; quote shows values as Python literals (repr). names: parameters this front end
    calls otherwise (e.g. the CLI's `{"path": "--out"}`), spelled in full.
    """

    prefix: str = ""
    dashes: bool = False
    joiner: str = "="
    quote: bool = False
    names: Mapping[str, str] = field(default_factory=dict)

    def name(self, parameter: str) -> str:
        if parameter in self.names:
            return self.names[parameter]
        return self.prefix + (parameter.replace("_", "-") if self.dashes else parameter)

    def __call__(self, param: Param) -> str:
        if not param.has_value:
            return self.name(param.name)
        value = os.fspath(param.value) if isinstance(param.value, os.PathLike) else param.value  # paths as text
        value = repr(value) if self.quote else str(value)
        return f"{self.name(param.name)}{self.joiner}{value}"

    def with_names(self, **names: str) -> "Wording":
        """This wording with some parameters named otherwise, e.g. `CLI.with_names(path="--out")`."""
        return Wording(self.prefix, self.dashes, self.joiner, self.quote, {**self.names, **names})


PYTHON = Wording(quote=True)  # keyword arguments: mode='hybrid'
CLI = Wording(prefix="--", dashes=True, joiner=" ")  # flags: --mode hybrid
HTTP = Wording()  # query parameters: mode=hybrid


class VitrinaError(Exception):
    """An error a user can act on: the input, the index or the environment is not what the call needs.

    `str(error)` is worded in Python terms; `error.worded(CLI)` or `worded(error, HTTP)` in a front
    end's own terms (see the module docstring).
    """

    def __init__(self, message: str = "", /, **fields: Any) -> None:
        self.template = message
        self.fields = fields
        super().__init__(self.worded(PYTHON))

    def worded(self, wording: Wording) -> str:
        """The message with each parameter spelled as `wording` spells it."""
        template = getattr(self, "template", None)
        if template is None:  # a subclass that did not pass through VitrinaError.__init__
            return super().__str__()
        if not self.fields:
            return template
        return template.format(**{k: wording(v) if isinstance(v, Param) else v for k, v in self.fields.items()})


def worded(error: BaseException, wording: Wording) -> str:
    """Any exception's message, in `wording`'s terms when it is a VitrinaError."""
    return error.worded(wording) if isinstance(error, VitrinaError) else str(error)


# The error types of the layers, each a VitrinaError, are defined beside the code that raises them
# and importable from here too. Looked up on first use: their modules import VitrinaError from here.
_LAYER_ERRORS = {
    "ArgumentError": "vitrina.engine.errors",
    "CatalogError": "vitrina.engine.errors",
    "QueryError": "vitrina.engine.errors",
    "EncoderError": "vitrina.encoders.errors",
    "ImageLoadError": "vitrina.encoders.errors",
    "IndexStoreError": "vitrina.index.errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAYER_ERRORS:
        import importlib

        return getattr(importlib.import_module(_LAYER_ERRORS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CLI",
    "HTTP",
    "PYTHON",
    "Param",
    "VitrinaError",
    "Wording",
    "worded",
    *_LAYER_ERRORS,
]
