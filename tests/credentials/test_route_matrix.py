"""Every route of the three services against every kind of caller: seller A's key on A
(allowed where its scope says), on B (404 as for a seller that does not exist, or 403 for
a write naming B), a key of A without the route's scope (403 naming it), a staff key
(allowed on any seller) and no key (401; the console's HTML pages answer 403).

The routes come from the apps' own route lists: a route without a row in :data:`ROUTES`
(and not in :data:`PUBLIC`) fails :func:`test_every_route_of_every_service_has_a_row`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from services.scorer.domain.evaluator import Evaluator
from services.scorer.domain.policy import load_policy
from services.scorer.storage.plan import apply_records
from shared.credentials.scopes import Scope
from shared.db import create_engine
from tests.credentials.stack import (
    SELLER_SCOPES,
    SERVICES,
    Instance,
    Issued,
    create,
    credentials_environment,
    issue,
    migrate,
    running,
    seller_key,
    settings_for,
    wait_until,
)
from tests.scorer.conftest import TODAY, record, shipment
from tools.localstack import TansuBroker

SELLER_A, SELLER_B, NOBODY = "A1MATRIX", "B2MATRIX", "Z9NOSUCH"
#: Routes that take no API key: carrier webhooks (signed by the carrier), Amazon's redirect
#: back after consent (its state is signed by vtrwatch), and operations.
PUBLIC = (
    re.compile(r"^/v1/webhooks/"),
    re.compile(r"^/v1/amazon/callback$"),
    re.compile(r"^/(healthz|readyz|metrics)$"),
)


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    json: Any = None


@dataclass(frozen=True)
class RouteCase:
    scope: Scope
    call: Callable[[str], Call]
    allowed: int
    #: A's key naming B: 404 where the seller is in the path, 403 for a write naming B in its body.
    other_seller: int = 404
    #: The answer to A's key on B equals a staff key's on a seller that does not exist.
    same_as_unknown: bool = False
    unauthenticated: int = 401
    prepare: Callable[[str], Call] | None = None
    html: bool = False


def confirmation(seller: str) -> dict[str, Any]:
    return {
        "order_id": f"o-{seller}",
        "seller_id": seller,
        "marketplace": "US",
        "category": "toys",
        "carrier": "China Post",
        "tracking_number": "RR123456785CN",
        "order_value": {"amount": "4.99", "currency": "USD"},
        "confirmed_at": datetime.now(UTC).isoformat(),
        "promised_delivery_date": (datetime.now(UTC) + timedelta(days=10)).date().isoformat(),
    }


SUBSCRIPTION = {"emails": ["ops@example.com"], "language": "en"}


def put_subscription(seller: str) -> Call:
    return Call("PUT", f"/v1/sellers/{seller}/subscription", SUBSCRIPTION)


def console_page(page: str, query: str) -> Callable[[str], Call]:
    return lambda seller: Call("GET", f"/console/{seller}{page}{query}")


ROUTES: dict[tuple[str, str, str], RouteCase] = {
    ("ingest", "POST", "/v1/shipments"): RouteCase(
        Scope.SHIPMENTS_WRITE, lambda s: Call("POST", "/v1/shipments", [confirmation(s)]), 202, other_seller=403
    ),
    ("ingest", "POST", "/v1/shipments/{tracking_number}/cancel"): RouteCase(
        Scope.SHIPMENTS_WRITE,
        lambda s: Call("POST", "/v1/shipments/RR123456785CN/cancel", {"seller_id": s}),
        202,
        other_seller=403,
    ),
    # Allowed, the route answers 503: Amazon is not set up in the tests (no application id).
    ("ingest", "GET", "/v1/amazon/authorize"): RouteCase(
        Scope.SHIPMENTS_WRITE, lambda s: Call("GET", f"/v1/amazon/authorize?seller_id={s}"), 503
    ),
    # Allowed, the route answers 404: no Amazon report for the seller yet (as for one unknown).
    ("scorer", "GET", "/v1/sellers/{seller_id}/amazon"): RouteCase(
        Scope.SCORES_READ, lambda s: Call("GET", f"/v1/sellers/{s}/amazon"), 404, same_as_unknown=True
    ),
    ("scorer", "GET", "/v1/sellers/{seller_id}/vtr"): RouteCase(
        Scope.SCORES_READ, lambda s: Call("GET", f"/v1/sellers/{s}/vtr"), 200, same_as_unknown=True
    ),
    ("scorer", "GET", "/v1/sellers/{seller_id}/shipments"): RouteCase(
        Scope.SCORES_READ, lambda s: Call("GET", f"/v1/sellers/{s}/shipments"), 200, same_as_unknown=True
    ),
    **{
        ("scorer", "GET", f"/console/{{seller_id}}{page}"): RouteCase(
            Scope.CONSOLE_READ, console_page(page, query), 200, unauthenticated=403, html=True
        )
        for page, query in (
            ("", ""),
            ("/notifications", ""),
            ("/category", "?marketplace=US&category=toys"),
            ("/packages.csv", ""),
            ("/packages.xlsx", ""),
        )
    },
    ("notifier", "PUT", "/v1/sellers/{seller_id}/subscription"): RouteCase(
        Scope.SUBSCRIPTIONS_WRITE, put_subscription, 200
    ),
    ("notifier", "GET", "/v1/sellers/{seller_id}/subscription"): RouteCase(
        Scope.NOTIFICATIONS_READ,
        lambda s: Call("GET", f"/v1/sellers/{s}/subscription"),
        200,
        same_as_unknown=True,
        prepare=put_subscription,
    ),
    ("notifier", "DELETE", "/v1/sellers/{seller_id}/subscription"): RouteCase(
        Scope.SUBSCRIPTIONS_WRITE,
        lambda s: Call("DELETE", f"/v1/sellers/{s}/subscription"),
        204,
        same_as_unknown=True,
        prepare=put_subscription,
    ),
    ("notifier", "GET", "/v1/sellers/{seller_id}/notifications"): RouteCase(
        Scope.NOTIFICATIONS_READ, lambda s: Call("GET", f"/v1/sellers/{s}/notifications"), 200
    ),
    ("notifier", "GET", "/v1/audit"): RouteCase(Scope.AUDIT_READ, lambda s: Call("GET", f"/v1/audit?seller={s}"), 200),
}


def api_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every API route, through included routers (FastAPI includes them
    lazily: an included router is a wrapper around the original one and its prefix)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, set(route.methods or ())
        elif (original := getattr(route, "original_router", None)) is not None:
            yield from api_routes(original.routes, prefix + route.include_context.prefix)


def app_routes() -> set[tuple[str, str, str]]:
    found: set[tuple[str, str, str]] = set()
    with_env = {"VTR_KAFKA_BOOTSTRAP": "127.0.0.1:9", "VTR_CREDENTIALS_TOPIC": "t", "VTR_CREDENTIAL_USAGE_TOPIC": "u"}
    for service in SERVICES:
        app = create(service, settings_for(service, with_env, "sqlite+aiosqlite:///:memory:"))
        for path, methods in api_routes(app.routes):
            if not any(pattern.search(path) for pattern in PUBLIC):
                found.update((service, method, path) for method in methods)
    assert len(found) > 10, "the apps' routes were not found"
    return found


def test_every_route_of_every_service_has_a_row() -> None:
    assert app_routes() == set(ROUTES)


@dataclass
class Matrix:
    instances: dict[str, Instance]
    own: Issued
    staff: Issued
    without: dict[Scope, Issued] = field(default_factory=dict)

    async def send(self, service: str, call: Call, issued: Issued | None) -> httpx.Response:
        headers = issued.auth if issued is not None else {}
        client = self.instances[service].client
        return await client.request(call.method, call.url, json=call.json, headers=headers)


@pytest.fixture(scope="module")
async def matrix(kafka_broker: TansuBroker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Matrix]:
    directory = tmp_path_factory.mktemp("matrix")
    with credentials_environment(kafka_broker) as env:
        async with AsyncExitStack() as stack:
            instances = {}
            for service in SERVICES:
                url = f"sqlite+aiosqlite:///{directory}/{service}.db"
                await asyncio.to_thread(migrate, service, url)
                if service == "scorer":
                    engine = create_engine(url)
                    async with engine.begin() as connection:
                        shipments = [record(shipment(f"o-{s}", seller_id=s)) for s in (SELLER_A, SELLER_B)]
                        await apply_records(connection, Evaluator(load_policy()), shipments, TODAY)
                    await engine.dispose()
                instances[service] = await stack.enter_async_context(running(service, settings_for(service, env, url)))
            own = await asyncio.to_thread(seller_key, SELLER_A)
            staff = await asyncio.to_thread(issue, "--staff")
            without = {
                Scope(scope): await asyncio.to_thread(seller_key, SELLER_A, [s for s in SELLER_SCOPES if s != scope])
                for scope in SELLER_SCOPES
            }
            for issued in (own, staff, *without.values()):
                await wait_until(list(instances.values()), issued, SELLER_A, accepted=True, within=60)
            yield Matrix(instances, own, staff, without)


CASES = sorted(ROUTES)


def _ids(key: tuple[str, str, str]) -> str:
    return " ".join(key)


async def _answer(
    matrix: Matrix, key: tuple[str, str, str], seller: str, issued: Issued | None
) -> tuple[RouteCase, httpx.Response]:
    """The route's answer to ``issued`` naming ``seller``, after its preparation (as staff)."""
    service, case = key[0], ROUTES[key]
    if case.prepare is not None:
        prepared = await matrix.send(service, case.prepare(seller), matrix.staff)
        assert prepared.status_code < 300, prepared.text
    return case, await matrix.send(service, case.call(seller), issued)


@pytest.mark.parametrize("key", CASES, ids=_ids)
async def test_a_seller_key_on_its_own_seller_is_allowed(matrix: Matrix, key: tuple[str, str, str]) -> None:
    case, response = await _answer(matrix, key, SELLER_A, matrix.own)
    assert response.status_code == case.allowed, response.text


@pytest.mark.parametrize("key", CASES, ids=_ids)
async def test_a_seller_key_on_another_seller_finds_nothing(matrix: Matrix, key: tuple[str, str, str]) -> None:
    case, response = await _answer(matrix, key, SELLER_B, matrix.own)
    service = key[0]
    assert response.status_code == case.other_seller, response.text
    if case.other_seller == 403:
        assert "another seller" in response.json()["detail"]
    if case.same_as_unknown:
        unknown = await matrix.send(service, case.call(NOBODY), matrix.staff)
        assert unknown.status_code == response.status_code
        assert unknown.text.replace(NOBODY, SELLER_B) == response.text
    if case.prepare is not None:  # B's resource is still there, untouched
        assert (await matrix.send(service, case.prepare(SELLER_B), matrix.staff)).status_code < 300


@pytest.mark.parametrize("key", CASES, ids=_ids)
async def test_a_key_without_the_scope_gets_403_naming_it(matrix: Matrix, key: tuple[str, str, str]) -> None:
    case, response = await _answer(matrix, key, SELLER_A, matrix.without[ROUTES[key].scope])
    assert response.status_code == 403
    if case.html:
        assert "console:read" in response.text
    else:
        assert response.json()["detail"] == f"this key lacks the scope {case.scope.value}"


@pytest.mark.parametrize("key", CASES, ids=_ids)
async def test_a_staff_key_is_allowed_on_any_seller(matrix: Matrix, key: tuple[str, str, str]) -> None:
    case, response = await _answer(matrix, key, SELLER_B, matrix.staff)
    assert response.status_code == case.allowed, response.text


@pytest.mark.parametrize("key", CASES, ids=_ids)
async def test_no_key_is_unauthenticated(matrix: Matrix, key: tuple[str, str, str]) -> None:
    service, case = key[0], ROUTES[key]
    response = await matrix.send(service, case.call(SELLER_A), None)
    assert response.status_code == case.unauthenticated
    revoked_looking = Issued("000000000000", "vtr_sk_000000000000_" + "A" * 43)
    response = await matrix.send(service, case.call(SELLER_A), revoked_looking)
    assert response.status_code == case.unauthenticated
