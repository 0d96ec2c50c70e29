"""Stable splits by a hash of an id: the same on every run and machine."""

from __future__ import annotations

import hashlib


def heldout_bucket(key: str) -> float:
    """A stable number in [0, 1) per id (query or product); ids below a held-out share are never trained on."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:12], 16) / 16**12
