"""The three services in-process against a real broker, sharing a credentials topic of the
test's own, with keys issued through the operator CLI (helpers for the matrix, the
revocation and the dump tests)."""

from __future__ import annotations

import asyncio
import io
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.notifier.app import MIGRATIONS_DIR as NOTIFIER_MIGRATIONS
from services.notifier.app import create_app as create_notifier
from services.notifier.settings import NotifierSettings
from services.scorer.app import create_app as create_scorer
from services.scorer.settings import ScorerSettings
from shared.credentials.__main__ import main as credentials_cli
from shared.credentials.access import Credentials
from shared.credentials.scopes import DEFAULT_STAFF_SCOPES
from shared.db import upgrade_database
from tests.scorer.conftest import MIGRATIONS as SCORER_MIGRATIONS
from tests.scorer.conftest import TODAY
from tools.localstack import TansuBroker

SERVICES = ("ingest", "scorer", "notifier")
#: Every scope a seller key may hold.
SELLER_SCOPES = sorted(scope.value for scope in DEFAULT_STAFF_SCOPES)
ENV_KEY = "matrix-env-staff-key"


@dataclass(frozen=True)
class Issued:
    key_id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextmanager
def credentials_environment(broker: TansuBroker) -> Iterator[dict[str, str]]:
    """Topics of this stack's own, in the environment (the CLI reads it) and for settings."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        "VTR_KAFKA_BOOTSTRAP": broker.bootstrap,
        "VTR_CREDENTIALS_TOPIC": f"vtr.credentials.test-{suffix}",
        "VTR_CREDENTIAL_USAGE_TOPIC": f"vtr.credential-usage.test-{suffix}",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def issue(*arguments: str) -> Issued:
    out, err = io.StringIO(), io.StringIO()
    assert credentials_cli(["issue", *arguments], out, err) == 0, err.getvalue()
    fields = dict(line.split(": ", 1) for line in out.getvalue().splitlines())
    return Issued(fields["key_id"], fields["token"])


def revoke(key_id: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert credentials_cli(["revoke", key_id], out, err) == 0, err.getvalue()


def seller_key(seller: str, scopes: list[str] | None = None) -> Issued:
    chosen = SELLER_SCOPES if scopes is None else scopes
    return issue("--seller", seller, *(part for scope in chosen for part in ("--scope", scope)))


def settings_for(service: str, env: dict[str, str], database_url: str | None = None, **extra: Any) -> Any:
    common: dict[str, Any] = {
        "kafka_bootstrap": env["VTR_KAFKA_BOOTSTRAP"],
        "credentials_topic": env["VTR_CREDENTIALS_TOPIC"],
        "credential_usage_topic": env["VTR_CREDENTIAL_USAGE_TOPIC"],
        "credential_usage_flush_seconds": 0.5,
        "api_keys": ENV_KEY,
        **extra,
    }
    if service == "ingest":
        return IngestSettings(**common)
    if service == "scorer":
        return ScorerSettings(database_url=database_url, notifier_url="http://127.0.0.1:9", **common)
    # A group of its own: instances of other tests that left the default group on the
    # session's broker would otherwise hold up this one's join until their sessions expire.
    group = f"vtr-notifier-test-{uuid.uuid4().hex[:8]}"
    return NotifierSettings(database_url=database_url, consumer_group=group, **common)


def create(service: str, settings: Any) -> FastAPI:
    if service == "ingest":
        return create_ingest(settings)
    if service == "scorer":
        return create_scorer(settings, today=lambda: TODAY, background=False)
    return create_notifier(settings)


def migrate(service: str, database_url: str) -> None:
    if service == "scorer":
        upgrade_database(SCORER_MIGRATIONS, database_url)
    elif service == "notifier":
        upgrade_database(NOTIFIER_MIGRATIONS, database_url)


@dataclass
class Instance:
    service: str
    app: FastAPI
    client: httpx.AsyncClient
    settings: Any = field(repr=False)

    @property
    def credentials(self) -> Credentials:
        credentials: Credentials = self.app.state.credentials
        return credentials


@asynccontextmanager
async def running(service: str, settings: Any) -> AsyncIterator[Instance]:
    """One instance with its lifespan (the credentials follower included), read to the end."""
    app = create(service, settings)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app)
        client = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url=f"http://{service}"))
        instance = Instance(service, app, client, settings)
        started = time.monotonic()
        while not instance.credentials.follower.loaded:
            assert time.monotonic() - started < 30, f"{service} never read the credentials topic"
            await asyncio.sleep(0.05)
        yield instance


#: A request per service that needs a key and changes nothing (a cancellation of a
#: number that is not one is refused after the key check, before anything is produced).
PROBES = {
    "ingest": ("POST", "/v1/shipments/%20/cancel"),
    "scorer": ("GET", "/v1/sellers/{seller}/vtr"),
    "notifier": ("GET", "/v1/sellers/{seller}/subscription"),
}


async def probe(instance: Instance, issued: Issued, seller: str) -> int:
    method, path = PROBES[instance.service]
    response = await instance.client.request(method, path.format(seller=seller), headers=issued.auth)
    return response.status_code


async def wait_until(
    instances: list[Instance], issued: Issued, seller: str, *, accepted: bool, within: float = 10.0
) -> float:
    """Seconds until every instance accepts (or refuses with 401) the key over HTTP."""
    started = time.monotonic()
    pending = list(instances)
    while pending:
        statuses = [await probe(instance, issued, seller) for instance in pending]
        pending = [i for i, status in zip(pending, statuses, strict=True) if (status != 401) != accepted]
        elapsed = time.monotonic() - started
        assert elapsed < within, f"{[i.service for i in pending]} still {'refuse' if accepted else 'accept'} the key"
        if pending:
            await asyncio.sleep(0.05)
    return time.monotonic() - started
