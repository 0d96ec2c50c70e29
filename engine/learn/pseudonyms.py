"""Pseudonymised shoppers: user ids (and event ids made from them) are keyed hashes before they touch disk.

A user id is stored as HMAC-SHA256(secret, id) in hex. The secret is ShopperConfig.user_key
(VITRINA_USER_KEY) or, when none is given, the root's events/user.key: 32 random bytes created at
first use with mode 0600. A fingerprint of the secret (events/user.key.check, itself an HMAC, not
the secret) catches a changed VITRINA_USER_KEY, under which every shopper would silently look new.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from vitrina.engine.errors import QueryError
from vitrina.encoders.files import write_file_durably

KEY_FILE = "user.key"
CHECK_FILE = "user.key.check"
_CHECK_TEXT = b"vitrina user key check"


class Pseudonyms:
    """Keyed hashes of user ids and event ids under one secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def __repr__(self) -> str:
        return "Pseudonyms(<secret>)"

    def user(self, raw: str) -> str:
        """The stored form of a raw user id: HMAC-SHA256 in hex (64 characters)."""
        return hmac.new(self._secret, str(raw).encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def event(self, raw: str) -> str:
        """The stored form of an event identity (a file's event_id or a digest of the raw event): 32 hex."""
        data = b"event\x1f" + str(raw).encode("utf-8", "surrogatepass")
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()[:32]

    @property
    def fingerprint(self) -> str:
        return hmac.new(self._secret, _CHECK_TEXT, hashlib.sha256).hexdigest()[:32]

    @classmethod
    def of(cls, folder: Path, user_key: str | None, create: bool) -> "Pseudonyms | None":
        """The secret of an events folder: `user_key` when given, else folder/user.key (made when `create`,
        else None when there is none yet). Refuses a key that is not the one the folder was hashed with."""
        folder = Path(folder)
        if user_key is not None:
            secret = user_key.encode("utf-8")
        elif (folder / KEY_FILE).is_file():
            secret = bytes.fromhex((folder / KEY_FILE).read_text().strip())
        elif create:
            secret = secrets.token_bytes(32)
            _write_private(folder / KEY_FILE, secret.hex() + "\n")
        else:
            return None
        found = cls(secret)
        check = folder / CHECK_FILE
        if check.is_file():
            if check.read_text().strip() != found.fingerprint:
                raise QueryError(f"the user key ({'VITRINA_USER_KEY' if user_key else folder / KEY_FILE}) is not the one "
                                 f"the shoppers under {folder.parent} were pseudonymised with; set the original key")
        elif create:
            _write_private(check, found.fingerprint + "\n")
        return found


def _write_private(path: Path, text: str) -> None:
    """Write a small file readable by its owner only (0600), whole or not at all."""
    write_file_durably(path, text.encode("utf-8"), 0o600)
