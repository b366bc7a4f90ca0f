"""Signed links to a seller's console: HMAC-SHA256 over the seller id and an expiry.

The notifier signs (every e-mail and Slack message carries a link), the scorer, which
serves the console, verifies. Both hold the same secret (``VTR_CONSOLE_SECRET``). A link is

    {base}/console/{seller_id}[/{page}]?t={expires}.{signature}

where ``expires`` is a Unix time in seconds and ``signature`` the URL-safe base64 (no
padding) of HMAC-SHA256(secret, ``v1\\n{seller_id}\\n{expires}``). Nothing else secret is in
the URL; a token for one seller does not verify for another, and changing any character of
the seller id, the expiry or the signature makes it fail.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import quote, urlencode

#: The query parameter that carries the token.
TOKEN_PARAMETER = "t"  # noqa: S105 - a parameter name, not a secret
#: Path prefix of the console on the service that serves it.
CONSOLE_PREFIX = "/console"
_VERSION = "v1"


class Verdict(StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    INVALID = "invalid"


def _signature(secret: bytes, seller_id: str, expires: int) -> str:
    message = f"{_VERSION}\n{seller_id}\n{expires}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(secret: bytes, seller_id: str, expires: int) -> str:
    """The token for ``seller_id`` valid until the Unix time ``expires``."""
    return f"{expires}.{_signature(secret, seller_id, expires)}"


def verify(secret: bytes, seller_id: str, token: str, now: datetime) -> Verdict:
    """Whether ``token`` opens ``seller_id``'s console at ``now`` (constant-time compare)."""
    expires_text, _, signature = token.partition(".")
    if not (expires_text.isdigit() and len(expires_text) <= 12 and signature):
        return Verdict.INVALID
    expires = int(expires_text)
    if not hmac.compare_digest(_signature(secret, seller_id, expires).encode(), signature.encode()):
        return Verdict.INVALID
    if now.timestamp() >= expires:
        return Verdict.EXPIRED
    return Verdict.VALID


def expiry(token: str) -> int | None:
    text = token.partition(".")[0]
    return int(text) if text.isdigit() else None


@dataclass(frozen=True)
class ConsoleLinks:
    """Builds signed console links: ``base`` is the scheme, host and any path prefix."""

    base: str
    secret: bytes
    valid_for: timedelta = timedelta(days=7)

    def link(
        self, seller_id: str, now: datetime, *, marketplace: str | None = None, category: str | None = None
    ) -> str:
        expires = int((now + self.valid_for).timestamp())
        path = f"{self.base.rstrip('/')}{CONSOLE_PREFIX}/{quote(seller_id, safe='')}"
        query: dict[str, str] = {}
        if marketplace is not None and category is not None:
            path += "/category"
            query = {"marketplace": marketplace, "category": category}
        query[TOKEN_PARAMETER] = sign(self.secret, seller_id, expires)
        return f"{path}?{urlencode(query, quote_via=quote)}"
