"""A thin async client of the SP-API calls vtrwatch makes, and of Login with Amazon.

Why not python-amazon-sp-api: docs/amazon.md ("Client") has the measurement. In short,
it is synchronous (one blocking thread per call in an asyncio worker), it picks sandbox
or production at import time rather than per endpoint setting, and the five calls used
here are each one documented HTTP request.

Every call waits its turn at the usage plan of (selling partner, region, operation): a
token bucket with Amazon's published rate and burst, re-rated from the
``x-amzn-RateLimit-Limit`` header of each answer. 429, 5xx and network errors are
retried with exponential back-off and full jitter (``VTR_REGISTRATION_*`` attempts and
delays, as the other vendor calls). LWA ``invalid_grant`` and SP-API 401/403 raise
:class:`AuthorisationRevoked`: the seller must connect again. No token ever reaches a
log line or an exception text.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from services.ingest.metrics import AMAZON_CALLS
from services.ingest.vendor_calls import RateLimiter, Retryable, RetryPolicy, call_with_retries

log = logging.getLogger(__name__)

#: Requests per second and burst of each operation (the models' usage plan tables).
USAGE_PLANS: dict[str, tuple[float, int]] = {
    "searchOrders": (0.0056, 20),
    "getCatalogItem": (2.0, 2),
    "createReport": (0.0167, 15),
    "getReport": (2.0, 15),
    "getReportDocument": (0.0167, 15),
}
PERFORMANCE_REPORT = "GET_V2_SELLER_PERFORMANCE_REPORT"
#: Hosts a report document may be downloaded from (pre-signed S3 / CloudFront URLs), besides
#: the configured SP-API endpoint's own host (the sandbox and tests serve documents there).
DOCUMENT_HOST_SUFFIXES = (".amazonaws.com", ".cloudfront.net")
#: Access tokens live an hour; renew a minute early.
_ACCESS_TOKEN_MARGIN_SECONDS = 60.0


class AuthorisationRevoked(Exception):
    """LWA refused the refresh token (``invalid_grant``) or SP-API answered 401/403."""


class AmazonError(Exception):
    """An answer that retrying will not change (4xx other than 401/403/429, unreadable body)."""


class TokenBucket(RateLimiter):
    """``rate`` calls per second with up to ``burst`` at once; the rate follows Amazon's header."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(rate, clock)
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._updated = clock()

    def rerate(self, header: str | None) -> None:
        try:
            rate = float(header) if header else 0.0
        except ValueError:
            return
        if rate > 0:
            self.rate = rate

    async def acquire(self) -> None:
        async with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
            self._tokens -= 1
        if wait > 0:
            await asyncio.sleep(wait)


class UsagePlans:
    """One bucket per (selling partner, region, operation): SP-API's plans are per seller and app."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}

    def bucket(self, selling_partner_id: str, region: str, operation: str) -> TokenBucket:
        key = (selling_partner_id, region, operation)
        if key not in self._buckets:
            rate, burst = USAGE_PLANS[operation]
            self._buckets[key] = TokenBucket(rate, burst)
        return self._buckets[key]


def jittered(policy: RetryPolicy) -> RetryPolicy:
    """The policy with full jitter: a random wait up to the exponential delay, so sellers
    throttled together do not retry together."""

    class Jittered(RetryPolicy):
        def delay(self, failed_attempt: int) -> float:
            return random.uniform(0, super().delay(failed_attempt))

    return Jittered(policy.attempts, policy.backoff_seconds, policy.backoff_max_seconds)


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    expires_at: float
    refresh_token: str | None


class LoginWithAmazon:
    """The LWA token endpoint: the consent code for a refresh token, refresh tokens for access tokens."""

    def __init__(self, http: httpx.AsyncClient, token_url: str, client_id: str, client_secret: str) -> None:
        self._http, self._url = http, token_url
        self._client = {"client_id": client_id, "client_secret": client_secret}
        self._cache: dict[str, TokenGrant] = {}

    async def _grant(self, form: dict[str, str]) -> TokenGrant:
        try:
            response = await self._http.post(self._url, data={**form, **self._client})
        except httpx.HTTPError as error:
            AMAZON_CALLS.labels("lwa", "network_error").inc()
            raise Retryable(f"LWA token endpoint: {type(error).__name__}") from None
        AMAZON_CALLS.labels("lwa", str(response.status_code)).inc()
        if response.status_code == 429 or response.status_code >= 500:
            raise Retryable(f"LWA token endpoint answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise AmazonError(f"LWA token endpoint answered {response.status_code} without JSON") from None
        if response.status_code != 200:
            code = str(body.get("error", "")) if isinstance(body, dict) else ""
            if code in ("invalid_grant", "unauthorized_client"):
                raise AuthorisationRevoked(f"LWA refused the grant ({code})")
            raise AmazonError(f"LWA token endpoint answered {response.status_code} ({code or 'no error code'})")
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise AmazonError("LWA token endpoint answered without an access token")
        expires_in = float(body.get("expires_in") or 3600)
        refresh = body.get("refresh_token")
        return TokenGrant(
            body["access_token"], time.monotonic() + expires_in, refresh if isinstance(refresh, str) else None
        )

    async def exchange_code(self, code: str) -> str:
        """The refresh token for a consent code (``spapi_oauth_code``, valid 5 minutes, once)."""
        grant = await self._grant({"grant_type": "authorization_code", "code": code})
        if not grant.refresh_token:
            raise AmazonError("LWA exchanged the code without a refresh token")
        return grant.refresh_token

    async def access_token(self, refresh_token: str, cache_key: str) -> str:
        cached = self._cache.get(cache_key)
        if cached is not None and cached.expires_at - _ACCESS_TOKEN_MARGIN_SECONDS > time.monotonic():
            return cached.access_token
        grant = await self._grant({"grant_type": "refresh_token", "refresh_token": refresh_token})
        self._cache[cache_key] = grant
        return grant.access_token

    def forget(self, cache_key: str) -> None:
        self._cache.pop(cache_key, None)


class SellingPartnerApi:
    """The calls of one connected seller in one region."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        lwa: LoginWithAmazon,
        plans: UsagePlans,
        policy: RetryPolicy,
        *,
        endpoint: str,
        selling_partner_id: str,
        region: str,
        refresh_token: str,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http, self._lwa, self._plans, self._policy = http, lwa, plans, jittered(policy)
        self._endpoint = endpoint.rstrip("/")
        self._selling_partner_id, self._region = selling_partner_id, region
        self._refresh_token = refresh_token
        self._sleep = sleep
        self._cache_key = f"{selling_partner_id}|{region}"

    async def _call(
        self, operation: str, method: str, path: str, *, params: Any = None, json: Any = None
    ) -> dict[str, Any]:
        bucket = self._plans.bucket(self._selling_partner_id, self._region, operation)

        async def once() -> dict[str, Any]:
            token = await self._lwa.access_token(self._refresh_token, self._cache_key)
            try:
                response = await self._http.request(
                    method,
                    self._endpoint + path,
                    params=params,
                    json=json,
                    headers={"x-amz-access-token": token, "user-agent": "vtrwatch/1 (Language=Python)"},
                )
            except httpx.HTTPError as error:
                AMAZON_CALLS.labels(operation, "network_error").inc()
                raise Retryable(f"{operation}: {type(error).__name__}") from None
            AMAZON_CALLS.labels(operation, str(response.status_code)).inc()
            bucket.rerate(response.headers.get("x-amzn-RateLimit-Limit"))
            if response.status_code in (401, 403):
                self._lwa.forget(self._cache_key)
                raise AuthorisationRevoked(f"{operation} answered {response.status_code}")
            if response.status_code == 429 or response.status_code >= 500:
                raise Retryable(f"{operation} answered {response.status_code}")
            try:
                body = response.json()
            except ValueError:
                raise AmazonError(f"{operation} answered {response.status_code} without JSON") from None
            if response.status_code >= 400 or not isinstance(body, dict):
                raise AmazonError(f"{operation} answered {response.status_code}: {_error_codes(body)}")
            return body

        return await call_with_retries(once, limiter=bucket, policy=self._policy, sleep=self._sleep)

    async def search_orders(self, last_updated_after: str, pagination_token: str | None = None) -> dict[str, Any]:
        # No marketplaceIds: every marketplace the seller sells in on this region's endpoint
        # (naming one it does not sell in would be refused).
        params: list[tuple[str, str]] = [
            ("lastUpdatedAfter", last_updated_after),
            ("fulfilledBy", "MERCHANT"),
            ("includedData", "FULFILLMENT,PACKAGES,PROCEEDS"),
            ("maxResultsPerPage", "100"),
        ]
        if pagination_token:
            params.append(("paginationToken", pagination_token))
        return await self._call("searchOrders", "GET", "/orders/2026-01-01/orders", params=params)

    async def get_catalog_item(self, asin: str, marketplace_id: str) -> dict[str, Any]:
        return await self._call(
            "getCatalogItem",
            "GET",
            f"/catalog/2022-04-01/items/{asin}",
            params={"marketplaceIds": marketplace_id, "includedData": "summaries,classifications"},
        )

    async def create_report(self, report_type: str, marketplace_ids: list[str]) -> str:
        body = await self._call(
            "createReport",
            "POST",
            "/reports/2021-06-30/reports",
            json={"reportType": report_type, "marketplaceIds": marketplace_ids},
        )
        report_id = body.get("reportId")
        if not isinstance(report_id, str) or not report_id:
            raise AmazonError("createReport answered without a reportId")
        return report_id

    async def get_report(self, report_id: str) -> dict[str, Any]:
        return await self._call("getReport", "GET", f"/reports/2021-06-30/reports/{report_id}")

    async def get_report_document(self, document_id: str) -> bytes:
        """The document's bytes, un-gzipped when Amazon says it is compressed."""
        meta = await self._call("getReportDocument", "GET", f"/reports/2021-06-30/documents/{document_id}")
        url = meta.get("url")
        if not isinstance(url, str) or not self._document_url_allowed(url):
            raise AmazonError("getReportDocument answered a URL outside the allowed hosts")

        async def download() -> bytes:
            try:
                response = await self._http.get(url)
            except httpx.HTTPError as error:
                raise Retryable(f"report document download: {type(error).__name__}") from None
            if response.status_code == 429 or response.status_code >= 500:
                raise Retryable(f"report document download answered {response.status_code}")
            if response.status_code != 200:
                raise AmazonError(f"report document download answered {response.status_code}")
            return response.content

        content = await call_with_retries(download, limiter=RateLimiter(10.0), policy=self._policy, sleep=self._sleep)
        if str(meta.get("compressionAlgorithm", "")).upper() == "GZIP":
            try:
                content = gzip.decompress(content)
            except (OSError, EOFError) as error:
                raise AmazonError("report document is not the GZIP Amazon said it is") from error
        return content

    def _document_url_allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host == urlsplit(self._endpoint).hostname:
            return parts.scheme == urlsplit(self._endpoint).scheme
        return parts.scheme == "https" and host.endswith(DOCUMENT_HOST_SUFFIXES)


def _error_codes(body: Any) -> str:
    """The ``errors[].code`` of an SP-API error body (codes only: messages may echo input)."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return "no error list"
    return ",".join(str(error.get("code", "?")) for error in errors if isinstance(error, dict))[:200] or "no code"
