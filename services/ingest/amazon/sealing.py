"""Refresh tokens sealed at rest, and the signed ``state`` of the consent flow. No I/O.

A refresh token is sealed with AES-256-GCM under the first key of
``VTR_AMAZON_TOKEN_KEY`` (``KEY_ID:BASE64,...``); the sealed form names the key id, so
a rotated key list (new key first, old keys after) still opens what the old key sealed,
and ``amazon status`` shows which tokens still wait to be re-sealed. The seller, selling
partner and region are the cipher's associated data: a sealed token copied onto another
seller's record does not open.

The consent ``state`` is ``v1.<seller>.<region>.<nonce>.<expires>.<mac>`` (base64url
fields), the MAC an HMAC-SHA256 under a key derived from the current token key: it binds
the state to one seller and region (changing either breaks the MAC) and to an expiry;
the nonce makes it single-use (the callback refuses a nonce it has seen).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.ingest.amazon.marketplaces import REGIONS, Region

#: How long a consent link stays usable (Amazon's code itself is valid for 5 minutes).
STATE_LIFETIME_SECONDS = 600
_STATE_VERSION = "v1"


class SealError(ValueError):
    """A sealed token or a state that does not open (wrong key, tampered, expired)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise SealError("not base64url") from error


@dataclass(frozen=True)
class SealedToken:
    key_id: str
    nonce: str
    ciphertext: str


class TokenKeys:
    """The key ring of ``VTR_AMAZON_TOKEN_KEY``: the first key seals, every key opens."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("VTR_AMAZON_TOKEN_KEY holds no key")
        self._keys = dict(keys)
        self.current_id = keys[0][0]
        self._state_key = hmac.new(keys[0][1], b"vtrwatch amazon consent state", hashlib.sha256).digest()

    @classmethod
    def parse(cls, setting: str) -> TokenKeys:
        """``KEY_ID:BASE64[,KEY_ID:BASE64...]``, each key 32 bytes."""
        keys = []
        for entry in setting.split(","):
            key_id, separator, encoded = entry.strip().partition(":")
            try:
                key = base64.b64decode(encoded, validate=True) if separator else b""
            except (binascii.Error, ValueError):
                key = b""
            if not key_id or len(key) != 32:
                raise ValueError("VTR_AMAZON_TOKEN_KEY must be KEY_ID:BASE64 entries of 32-byte keys, comma-separated")
            keys.append((key_id, key))
        return cls(keys)

    def seal(self, token: str, context: str) -> SealedToken:
        nonce = os.urandom(12)
        ciphertext = AESGCM(self._keys[self.current_id]).encrypt(nonce, token.encode(), context.encode())
        return SealedToken(self.current_id, _b64(nonce), _b64(ciphertext))

    def open(self, sealed: SealedToken, context: str) -> str:
        key = self._keys.get(sealed.key_id)
        if key is None:
            raise SealError(f"sealed with key id {sealed.key_id!r}, which VTR_AMAZON_TOKEN_KEY no longer holds")
        try:
            plain = AESGCM(key).decrypt(_unb64(sealed.nonce), _unb64(sealed.ciphertext), context.encode())
        except Exception as error:  # InvalidTag: tampered, or another seller's token
            raise SealError("sealed token does not open for this seller") from error
        return plain.decode()

    def sign_state(self, seller_id: str, region: str, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + STATE_LIFETIME_SECONDS)
        body = ".".join((_STATE_VERSION, _b64(seller_id.encode()), region, _b64(os.urandom(16)), str(expires)))
        return body + "." + _b64(hmac.new(self._state_key, body.encode(), hashlib.sha256).digest())


@dataclass(frozen=True)
class ConsentState:
    seller_id: str
    region: Region
    nonce: str
    expires_at: int


def verify_state(keys: TokenKeys, state: str, now: float | None = None) -> ConsentState:
    """The seller and region a state was signed for; :class:`SealError` if it was altered
    or has expired (single use is the caller's: it remembers the nonces it accepted)."""
    body, _, mac = state.rpartition(".")
    expected = _b64(hmac.new(keys._state_key, body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(mac.encode(), expected.encode()):
        raise SealError("state is not one vtrwatch signed")
    parts = body.split(".")
    if len(parts) != 5 or parts[0] != _STATE_VERSION:
        raise SealError("state has an unknown form")
    _, seller, region, nonce, expires = parts
    if region not in REGIONS or not expires.isdigit():
        raise SealError("state has an unknown form")
    if int(expires) < (time.time() if now is None else now):
        raise SealError("state has expired: start again from the connect link")
    return ConsentState(_unb64(seller).decode(), region, nonce, int(expires))
