"""API tokens and the records that describe them on the credentials topic. No I/O.

A token reads ``vtr_sk_<key id>_<secret>``: the prefix lets secret scanners (GitHub's,
gitleaks) recognise a leaked one; the key id (12 hex characters) names the key in logs,
metrics and the audit trail and finds its record without a search; the secret is 32
random bytes (URL-safe base64, 43 characters). Only the SHA-256 of the whole token is
stored: with 256 random bits a slow password hash would add nothing but latency on
every request, and a leaked hash cannot be turned back into a token.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import re
import secrets
from datetime import datetime

import msgspec

TOKEN_PREFIX = "vtr_sk_"  # noqa: S105 - the public prefix, not a secret
SECRET_BYTES = 32
KEY_ID_LENGTH = 12
#: A whole token (also what the tests and docs use to scan dumps for leaks).
TOKEN_PATTERN = re.compile(r"vtr_sk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
_KEY_ID = re.compile(r"^[0-9a-f]{12}$")


def operator_name() -> str:
    """The operating-system user running an operator command (the audit trail's "by")."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def new_key_id() -> str:
    return secrets.token_hex(KEY_ID_LENGTH // 2)


def new_token(key_id: str) -> str:
    secret = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")
    return f"{TOKEN_PREFIX}{key_id}_{secret}"


def token_digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def digests_match(presented: bytes, stored: bytes) -> bool:
    return hmac.compare_digest(presented, stored)


def is_key_id(text: str) -> bool:
    return _KEY_ID.match(text) is not None


class CredentialRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """One key's state, keyed by its id on the compacted credentials topic: the latest
    record of a key is the truth (issue writes one, revoke writes it again with
    ``revoked_at``). Never the token: only its SHA-256 (hex)."""

    key_id: str
    kind: str
    scopes: list[str]
    token_sha256: str
    issued_at: datetime
    seller_id: str | None = None
    #: A service key's service name, or a free note given at issue time.
    label: str | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    #: Who issued (and then revoked) it: the operator's login where the CLI ran.
    issued_by: str | None = None
    revoked_by: str | None = None


class UsageRecord(msgspec.Struct, frozen=True):
    """When a service instance last saw a key (keyed by key id on the usage topic)."""

    key_id: str
    last_used_at: datetime
    service: str


CREDENTIAL_CODEC = msgspec.json.Encoder()
CREDENTIAL_DECODER = msgspec.json.Decoder(CredentialRecord)
USAGE_DECODER = msgspec.json.Decoder(UsageRecord)
