"""Product ids that contain '/': clients send them percent-encoded (`/products/a%2Fb/image`), but the
server decodes the path before routing, so the id would span two segments. A small ASGI middleware
routes `/products/...` on the raw (still encoded) path instead, and the `product_id` convertor decodes
the id segment: exact for every id, including ones ending in '/image' or '/similar'."""

from __future__ import annotations

from typing import Awaitable, Callable
from urllib.parse import quote, unquote

from starlette.convertors import Convertor, register_url_convertor

PREFIX = "/products/"


class ProductIdConvertor(Convertor[str]):
    """One still-encoded path segment, decoded into the product id."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        """The product id of an encoded segment."""
        return unquote(value)

    def to_string(self, value: str) -> str:
        """The encoded segment of a product id."""
        return quote(value, safe="")


register_url_convertor("product_id", ProductIdConvertor())


class EncodedProductPaths:
    """ASGI middleware: `/products/{id}...` paths keep the id segment encoded (the rest is decoded as usual)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(PREFIX):
            raw = scope.get("raw_path")
            if raw:
                raw_path = raw.decode("utf-8", "replace").split("?", 1)[0]
                if raw_path.startswith(PREFIX):
                    segment, slash, rest = raw_path[len(PREFIX):].partition("/")
                    # in place: the metrics middleware reads the matched route back from this scope
                    scope["path"] = PREFIX + segment + slash + unquote(rest)
        await self.app(scope, receive, send)
