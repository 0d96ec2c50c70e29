"""Product ids that contain '/': clients send them percent-encoded (`/products/a%2Fb/image`), but the
server decodes the path before routing, so the id would span two segments. A small ASGI middleware
routes `/products/...` on the raw (still encoded) path instead, and the `product_id` parameter is
decoded after matching: exact for every id, including ones ending in '/image' or '/similar' or holding
a literal '%2F'. The route paths (and so the metrics' labels and the OpenAPI schema) stay as they were."""

from __future__ import annotations

from typing import Awaitable, Callable
from urllib.parse import quote, unquote

PREFIX = "/products/"


def decoded_product_id(segment: object) -> object:
    """The product id of the still-encoded path segment EncodedProductPaths routed on."""
    return unquote(segment) if isinstance(segment, str) else segment


class EncodedProductPaths:
    """ASGI middleware: `/products/{id}...` paths keep the id segment encoded (the rest is decoded as usual)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(PREFIX):
            raw_path = (scope.get("raw_path") or b"").decode("utf-8", "replace").split("?", 1)[0]
            if raw_path.startswith(PREFIX):
                segment, slash, rest = raw_path[len(PREFIX):].partition("/")
                rest = unquote(rest)
            else:  # a server without raw_path: the decoded path, its first segment encoded again
                segment, slash, rest = scope["path"][len(PREFIX):].partition("/")
                segment = quote(segment, safe="")
            # in place: the metrics middleware reads the matched route back from this scope
            scope["path"] = PREFIX + segment + slash + rest
        await self.app(scope, receive, send)
