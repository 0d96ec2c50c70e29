"""Access logs never name a shopper: user ids in request paths and queries are replaced before logging."""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "uvicorn.access"
REDACTED = "<redacted>"
_USER_PATH = re.compile(r"^(/users/)[^/?]+")
_USER_QUERY = re.compile(r"([?&]user(?:_id)?=)[^&]*")


def redact_path(path: str) -> str:
    """A request path (with its query) without the shopper id in /users/{id}/... or ?user=..."""
    return _USER_QUERY.sub(lambda m: m.group(1) + REDACTED, _USER_PATH.sub(lambda m: m.group(1) + REDACTED, path))


class RedactShoppers(logging.Filter):
    """A filter for uvicorn's access log, whose record args are (client, method, path, http version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_path(args[2]), *args[3:])
        return True


def redact_access_log() -> None:
    """Install the filter on uvicorn's access logger (once per process)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactShoppers) for f in logger.filters):
        logger.addFilter(RedactShoppers())
