"""The keys a service instance accepts, held in memory: the records of the credentials
topic (kept current by :class:`shared.credentials.follower.CredentialFollower`) plus the
unscoped staff keys of ``VTR_API_KEYS``. Checking a token is a dictionary lookup by its
key id, one SHA-256 and one constant-time comparison: nothing leaves the process."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from shared.credentials.scopes import EVERY_SCOPE, KeyKind, Principal
from shared.credentials.tokens import CredentialRecord, digests_match, key_id_of, token_digest

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
        self._active: dict[str, _Active] = {}
        self.records: dict[str, CredentialRecord] = {}
        self._env = [
            (Principal(f"{ENV_KEY_PREFIX}{position}", KeyKind.STAFF, None, EVERY_SCOPE), token_digest(key))
            for position, key in enumerate(env_keys or [], start=1)
        ]
        #: Set once the topic has been read to the end offsets it had at start-up.
        self.loaded = False
        #: key id -> Unix time of its last successful use here (flushed to the usage topic).
        self.used: dict[str, float] = {}

    @property
    def env_key_count(self) -> int:
        return len(self._env)

    def apply(self, record: CredentialRecord) -> None:
        """The latest record of a key replaces what was known of it."""
        self.records[record.key_id] = record
        if record.revoked_at is not None:
            self._active.pop(record.key_id, None)
            return
        principal = Principal(
            record.key_id,
            KeyKind(record.kind),
            record.seller_id if record.kind == KeyKind.SELLER else None,
            frozenset(record.scopes),
        )
        expires = record.expires_at.timestamp() if record.expires_at is not None else None
        self._active[record.key_id] = _Active(principal, bytes.fromhex(record.token_sha256), expires)

    def forget(self, key_id: str) -> None:
        """A tombstone: the key's record was deleted from the topic."""
        self.records.pop(key_id, None)
        self._active.pop(key_id, None)

    def authenticate(self, token: bytes, now: float | None = None) -> Principal | None:
        """The principal ``token`` stands for, or None (unknown, wrong, revoked, expired).
        Raises :class:`CredentialsNotLoaded` for an issued key the topic has not yet given."""
        digest = token_digest(token)
        key_id = key_id_of(token)
        if key_id is None:
            principal = None
            for candidate, stored in self._env:  # every entry compared: no early exit
                if digests_match(digest, stored):
                    principal = candidate
        else:
            entry = self._active.get(key_id)
            if entry is None:
                if not self.loaded:
                    raise CredentialsNotLoaded
                return None
            moment = time.time() if now is None else now
            if not digests_match(digest, entry.digest) or (entry.expires is not None and moment >= entry.expires):
                return None
            principal = entry.principal
        if principal is not None:
            self.used[principal.key_id] = time.time() if now is None else now
        return principal

    def take_usage(self) -> dict[str, float]:
        used, self.used = self.used, {}
        return used
