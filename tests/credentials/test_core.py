"""The credentials core without a broker: tokens, the registry, the rate limiter, the gate."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from shared.credentials.__main__ import CliError, new_record
from shared.credentials.access import KeyGate, Refusal
from shared.credentials.limits import Limit, RateLimiter, parse_overrides
from shared.credentials.registry import CredentialRegistry, CredentialsNotLoaded
from shared.credentials.scopes import EVERY_SCOPE, KeyKind, Principal, Scope
from shared.credentials.tokens import TOKEN_PATTERN, new_key_id, new_token


def loaded_registry(*records: object, env_keys: list[bytes] | None = None) -> CredentialRegistry:
    registry = CredentialRegistry(env_keys)
    for record in records:
        registry.apply(record)  # type: ignore[arg-type]
    registry.loaded = True
    return registry


def test_a_token_has_the_prefix_its_key_id_and_32_random_bytes() -> None:
    key_id = new_key_id()
    token = new_token(key_id)
    assert token.startswith(f"vtr_sk_{key_id}_")
    assert TOKEN_PATTERN.fullmatch(token)
    secret = token.removeprefix(f"vtr_sk_{key_id}_")
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32
    assert new_token(key_id) != token


def test_a_record_keeps_only_the_hash_and_the_registry_accepts_the_token() -> None:
    record, token = new_record(KeyKind.SELLER, ["scores:read"], seller_id="A1")
    # The secret is all that follows the key id: base64url, so it may hold "_" itself.
    secret = token.removeprefix(f"vtr_sk_{record.key_id}_")
    assert token not in repr(record) and secret not in repr(record)
    registry = loaded_registry(record)
    principal = registry.authenticate(token.encode())
    assert principal == Principal(record.key_id, KeyKind.SELLER, "A1", frozenset({"scores:read"}))
    assert registry.authenticate(token[:-2].encode() + b"xx") is None  # same key id, wrong secret
    assert registry.authenticate(b"vtr_sk_000000000000_" + b"a" * 43) is None  # unknown key id
    assert record.key_id in registry.take_usage()


def test_revoked_and_expired_keys_open_nothing() -> None:
    now = datetime.now(UTC)
    record, token = new_record(KeyKind.SELLER, ["scores:read"], seller_id="A1", expires_days=1, now=now)
    registry = loaded_registry(record)
    assert registry.authenticate(token.encode(), now.timestamp()) is not None
    assert registry.authenticate(token.encode(), (now + timedelta(days=1, seconds=1)).timestamp()) is None
    import msgspec

    registry.apply(msgspec.structs.replace(record, revoked_at=now))
    assert registry.authenticate(token.encode(), now.timestamp()) is None


def test_issued_keys_wait_for_the_topic_but_env_keys_do_not() -> None:
    record, token = new_record(KeyKind.STAFF, [])
    registry = CredentialRegistry([b"legacy-one", b"legacy-two"])
    with pytest.raises(CredentialsNotLoaded):
        registry.authenticate(token.encode())
    staff = registry.authenticate(b"legacy-two")
    assert staff == Principal("env-2", KeyKind.STAFF, None, EVERY_SCOPE)
    assert registry.authenticate(b"legacy-three") is None
    registry.apply(record)
    assert registry.authenticate(token.encode()) is not None


def test_scopes_are_checked_at_issue() -> None:
    with pytest.raises(CliError, match="only staff"):
        new_record(KeyKind.SELLER, ["admin"], seller_id="A1")
    with pytest.raises(CliError, match="at least one scope"):
        new_record(KeyKind.SELLER, [], seller_id="A1")
    with pytest.raises(CliError, match="seller id"):
        new_record(KeyKind.SELLER, ["scores:read"], seller_id="A 1")
    staff, _ = new_record(KeyKind.STAFF, [])
    assert "admin" not in staff.scopes and "shipments:write" in staff.scopes
    admin, _ = new_record(KeyKind.STAFF, ["admin"])
    assert admin.scopes == ["admin"]


def test_a_runaway_key_gets_retry_after_while_others_are_served() -> None:
    limiter = RateLimiter(Limit(per_second=10, burst=5), parse_overrides(["bigkey=100/200", "quiet=off"]))
    runaway = Principal("runaway", KeyKind.SELLER, "A1", frozenset())
    other = Principal("other", KeyKind.SELLER, "B1", frozenset())
    now = 1000.0
    assert all(limiter.wait_seconds(runaway, now) == 0 for _ in range(5))
    wait = limiter.wait_seconds(runaway, now)
    assert wait == pytest.approx(0.1)
    assert limiter.wait_seconds(other, now) == 0
    assert limiter.wait_seconds(runaway, now + 0.1) == 0  # refilled one token
    staff = Principal("staff", KeyKind.STAFF, None, frozenset())
    assert all(limiter.wait_seconds(staff, now) == 0 for _ in range(1000))
    big = Principal("bigkey", KeyKind.SELLER, "C1", frozenset())
    assert sum(limiter.wait_seconds(big, now) == 0 for _ in range(300)) == 200
    quiet = Principal("quiet", KeyKind.SELLER, "D1", frozenset())
    assert all(limiter.wait_seconds(quiet, now) == 0 for _ in range(1000))


@pytest.mark.parametrize("entry", ["nokey", "k=", "k=fast", "k=0", "k=5/0", "=5"])
def test_bad_overrides_are_refused_naming_the_entry(entry: str) -> None:
    with pytest.raises(ValueError, match="override"):
        parse_overrides([entry])


def test_the_gate_answers_401_429_404_403_in_that_order_and_counts_by_key_id() -> None:
    record, token = new_record(KeyKind.SELLER, ["scores:read"], seller_id="A1")
    gate = KeyGate(loaded_registry(record), RateLimiter(Limit(1000, 2), {}))
    bearer = f"Bearer {token}"
    assert gate.check(None, Scope.SCORES_READ, "A1") == Refusal(
        401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"}
    )
    assert isinstance(gate.check(bearer, Scope.SCORES_READ, "A1"), Principal)
    assert gate.check(bearer, Scope.SCORES_READ, "B1", "unknown seller") == Refusal(404, "unknown seller")
    limited = gate.check(bearer, Scope.SHIPMENTS_WRITE, "A1")
    assert isinstance(limited, Refusal) and limited.status == 429 and limited.headers == {"Retry-After": "1"}
    time.sleep(0.01)
    refused = gate.check(bearer, Scope.SHIPMENTS_WRITE, "A1")
    assert refused == Refusal(403, "this key lacks the scope shipments:write")
    labels = [
        sample.labels
        for metric in REGISTRY.collect()
        if metric.name == "vtr_api_key_requests"
        for sample in metric.samples
    ]
    assert {"key_id": record.key_id, "outcome": "other_seller"} in labels
    assert not any(token in str(label) for label in labels)
