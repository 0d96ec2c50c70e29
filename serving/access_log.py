"""Access logs without shoppers' ids or secrets: `/users/{id}/...` paths and the `user=` (and any key or
token) query parameters are redacted before uvicorn's access log prints them. uvicorn never logs
request headers, so the X-API-Key and Authorization headers never reach the log either."""

from __future__ import annotations

import copy
import logging
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "-"
SECRET_PARAMETERS = frozenset({"user", "user_id", "api_key", "apikey", "key", "token", "access_token"})


def redact_path(full_path: str) -> str:
    """A request path and query with shopper ids and secrets replaced by '-'."""
    path, sep, query = full_path.partition("?")
    if path.startswith("/users/"):
        path = "/users/-/recommendations" if path.endswith("/recommendations") else "/users/-"
    if query:
        pairs = []
        for pair in query.split("&"):
            name = pair.split("=", 1)[0]
            pairs.append(f"{name}={REDACTED}" if unquote_plus(name).strip().lower() in SECRET_PARAMETERS else pair)
        query = "&".join(pairs)
    return path + sep + query


class RedactingFilter(logging.Filter):
    """Rewrites uvicorn access records (args: client, method, path, HTTP version, status) in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the path argument; always keep the record."""
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_path(args[2]), *args[3:])
        return True


ACCESS_LOGGER = "uvicorn.access"


def redact_access_log() -> None:
    """Put the redacting filter on uvicorn's access logger itself (once per process), so an app served by
    any uvicorn setup, not only `vitrina serve`'s log_config, never logs shopper ids."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())


def log_config(level: str = "WARNING") -> dict[str, Any]:
    """uvicorn's logging configuration with the redacting filter on its access handler (applies in every worker).

    The server's own messages log at `level`; access records always at INFO, so that `access_log=True` prints
    them whatever the level (pass `log_level=None` to uvicorn, which would otherwise set both loggers alike).
    """
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["uvicorn"]["level"] = config["loggers"]["uvicorn.error"]["level"] = level
    config["loggers"]["uvicorn.access"]["level"] = "INFO"
    config.setdefault("filters", {})["redact_access"] = {"()": f"{__name__}.RedactingFilter"}
    config["handlers"]["access"].setdefault("filters", []).append("redact_access")
    return config
