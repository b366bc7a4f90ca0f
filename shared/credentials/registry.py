"""The keys a service instance accepts, held in memory: the records of the credentials
topic (kept current by :class:`shared.credentials.follower.CredentialFollower`) plus the
unscoped staff keys of ``VTR_API_KEYS``. Checking a token is one SHA-256, a dictionary
lookup by that digest and a constant-time comparison of the digests: nothing leaves the
process, and nothing is compared with the token itself (a lookup by digest tells an
attacker nothing about the token's bytes)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from shared.credentials.scopes import EVERY_SCOPE, KeyKind, Principal
from shared.credentials.tokens import TOKEN_PREFIX, CredentialRecord, digests_match, token_digest

log = logging.getLogger(__name__)

#: Key ids of the ``VTR_API_KEYS`` entries, by position: ``env-1``, ``env-2``, ...
ENV_KEY_PREFIX = "env-"


class CredentialsNotLoaded(Exception):
    """An issued key arrived before this instance has read the credentials topic to its
    end: it cannot yet tell a valid key from a revoked one (answered 503, Retry-After)."""


@dataclass(frozen=True, slots=True)
class _Active:
    principal: Principal
    digest: bytes
    #: Unix time after which the key no longer opens anything (None: no expiry).
    expires: float | None


class CredentialRegistry:
    def __init__(self, env_keys: list[bytes] | None = None) -> None:
        #: token digest -> the key it opens (issued keys and ``VTR_API_KEYS`` entries)
        self._by_digest: dict[bytes, _Active] = {}
        #: key id -> digest of its active key
        self._digest_of: dict[str, bytes] = {}
        self.records: dict[str, CredentialRecord] = {}
        for position, key in enumerate(env_keys or [], start=1):
            principal = Principal(f"{ENV_KEY_PREFIX}{position}", KeyKind.STAFF, None, EVERY_SCOPE)
            digest = token_digest(key)
            self._by_digest[digest] = _Active(principal, digest, None)
        self._env_key_count = len(env_keys or [])
        #: Set once the topic has been read to the end offsets it had at start-up.
        self.loaded = False
        #: key id -> Unix time of its last successful use here (flushed to the usage topic).
        self.used: dict[str, float] = {}

    @property
    def env_key_count(self) -> int:
        return self._env_key_count

    def apply(self, record: CredentialRecord) -> None:
        """The latest record of a key replaces what was known of it."""
        self.records[record.key_id] = record
        self._deactivate(record.key_id)
        if record.revoked_at is not None:
            return
        principal = Principal(
            record.key_id,
            KeyKind(record.kind),
            record.seller_id if record.kind == KeyKind.SELLER else None,
            frozenset(record.scopes),
        )
        expires = record.expires_at.timestamp() if record.expires_at is not None else None
        digest = bytes.fromhex(record.token_sha256)
        self._by_digest[digest] = _Active(principal, digest, expires)
        self._digest_of[record.key_id] = digest

    def forget(self, key_id: str) -> None:
        """A tombstone: the key's record was deleted from the topic."""
        self.records.pop(key_id, None)
        self._deactivate(key_id)

    def _deactivate(self, key_id: str) -> None:
        digest = self._digest_of.pop(key_id, None)
        if digest is not None:
            self._by_digest.pop(digest, None)

    def authenticate(self, token: bytes, now: float | None = None) -> Principal | None:
        """The principal ``token`` stands for, or None (unknown, wrong, revoked, expired).
        Raises :class:`CredentialsNotLoaded` for an issued key the topic has not yet given."""
        digest = token_digest(token)
        entry = self._by_digest.get(digest)
        if entry is None:
            if not self.loaded and token.startswith(_PREFIX):
                raise CredentialsNotLoaded
            return None
        moment = time.time() if now is None else now
        if not digests_match(digest, entry.digest) or (entry.expires is not None and moment >= entry.expires):
            return None
        principal = entry.principal
        self.used[principal.key_id] = moment
        return principal

    def take_usage(self) -> dict[str, float]:
        used, self.used = self.used, {}
        return used


_PREFIX = TOKEN_PREFIX.encode()
