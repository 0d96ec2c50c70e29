"""A header-read timeout for uvicorn, which has only a keep-alive one: a client that connects and then
sends its request line and headers slowly (or never finishes them) is disconnected after a few seconds
instead of holding a connection, and its slot in the server, forever."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

try:  # the protocol uvicorn's "auto" picks: httptools when installed, else h11
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _BaseProtocol
except ImportError:  # pragma: no cover
    from uvicorn.protocols.http.h11_impl import H11Protocol as _BaseProtocol  # type: ignore[assignment]


class HeaderTimeoutProtocol(_BaseProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP/1.1 protocol, closing connections whose request headers do not arrive in time.

    The clock starts when the connection opens and again when a response is complete (plus the
    keep-alive time then, which uvicorn enforces itself while nothing arrives); when it runs out and no
    request is being answered, the headers of the next request are still incomplete and the connection
    is closed. Requests being answered (or their bodies being read) are never cut.
    """

    header_timeout_s: float = 10.0

    def __init__(self, *args: Any, header_timeout_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request's headers."""
        super().connection_made(transport)
        self._arm_header_timer(self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock."""
        self._cancel_header_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        """Restart the clock for the next request's headers (after the keep-alive wait)."""
        super().on_response_complete()
        self._arm_header_timer(self.timeout_keep_alive + self.header_timeout_s)

    def _arm_header_timer(self, seconds: float) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(seconds, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        answering = self.cycle is not None and not self.cycle.response_complete
        if not answering and not self.transport.is_closing():
            self.logger.debug("closing a connection whose request headers took over %.1f s", self.header_timeout_s)
            self.transport.close()


@dataclass(frozen=True)
class HeaderTimeoutHTTP:
    """What `uvicorn.run(http=...)` takes: builds HeaderTimeoutProtocol with the timeout (picklable for --workers)."""

    header_timeout_s: float

    def __call__(self, **kwargs: Any) -> HeaderTimeoutProtocol:
        """One connection's protocol."""
        return HeaderTimeoutProtocol(header_timeout_s=self.header_timeout_s, **kwargs)


def uvicorn_timeouts(header_timeout_s: float, keep_alive_s: float) -> dict[str, Any]:
    """The keyword arguments of `uvicorn.run`/`uvicorn.Config` that apply both timeouts."""
    return {"http": HeaderTimeoutHTTP(header_timeout_s), "timeout_keep_alive": keep_alive_s}
