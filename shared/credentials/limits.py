"""Per-key token buckets: a seller's runaway ERP loop gets 429 while every other key is
served as usual. Buckets live in each instance's memory (no shared store on the request
path), so with N instances behind a balancer a key may get up to N times its rate."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from shared.credentials.scopes import KeyKind, Principal


@dataclass(frozen=True)
class Limit:
    per_second: float
    burst: float


def parse_overrides(entries: list[str]) -> dict[str, Limit | None]:
    """``KEY_ID=RATE[/BURST]`` or ``KEY_ID=off`` entries; ValueError naming a bad one."""
    overrides: dict[str, Limit | None] = {}
    for entry in entries:
        key_id, separator, value = entry.partition("=")
        key_id, value = key_id.strip(), value.strip()
        if not separator or not key_id or not value:
            raise ValueError(f"rate limit override {entry[:40]!r} is not KEY_ID=RATE[/BURST] or KEY_ID=off")
        if value == "off":
            overrides[key_id] = None
            continue
        rate_text, _, burst_text = value.partition("/")
        try:
            rate = float(rate_text)
            burst = float(burst_text) if burst_text else max(1.0, rate * 3)
        except ValueError:
            raise ValueError(f"rate limit override for {key_id[:20]!r}: {value[:20]!r} is not RATE[/BURST]") from None
        if not (rate > 0 and burst >= 1 and math.isfinite(rate) and math.isfinite(burst)):
            raise ValueError(f"rate limit override for {key_id[:20]!r}: rate must be > 0 and burst >= 1")
        overrides[key_id] = Limit(rate, burst)
    return overrides


class RateLimiter:
    def __init__(self, default: Limit, overrides: dict[str, Limit | None]) -> None:
        self._default = default
        self._overrides = overrides
        #: key id -> [tokens left, Unix time of the last refill]
        self._buckets: dict[str, list[float]] = {}

    def limit_for(self, principal: Principal) -> Limit | None:
        if principal.key_id in self._overrides:
            return self._overrides[principal.key_id]
        return self._default if principal.kind is KeyKind.SELLER else None

    def wait_seconds(self, principal: Principal, now: float | None = None) -> float:
        """0 when the request may go ahead (and a token is taken), else the seconds until it may."""
        if principal.kind is not KeyKind.SELLER and principal.key_id not in self._overrides:
            return 0.0  # the common staff and service case, without a call
        limit = self.limit_for(principal)
        if limit is None:
            return 0.0
        moment = time.monotonic() if now is None else now
        bucket = self._buckets.get(principal.key_id)
        if bucket is None:
            bucket = self._buckets[principal.key_id] = [limit.burst, moment]
        tokens = min(limit.burst, bucket[0] + (moment - bucket[1]) * limit.per_second)
        bucket[1] = moment
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / limit.per_second
