"""Vitrina: multimodal embedding and vector search for e-commerce catalogs."""

from pathlib import Path as _Path

__version__ = "0.1.0"

# Installed, the sub-packages (engine, encoders, index, serving) sit inside this package. In a source
# checkout they sit beside this folder, at the repository's top level: look there too.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "setup.cfg").is_file() and (_checkout / "engine" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821 (the package's own search path)
