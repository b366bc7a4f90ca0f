"""Issue 14, section 2: no error, log line, metric or HTTP reply contains a secret value.

Every secret is set to a unique marker; then the failure paths run (refusal to start in
prod, bad settings, wrong tokens, invalid bodies carrying a secret, SMTP and Slack down,
the scorer refusing the notifier's key, a database that is not there) while every log
record (formatted as in production), every reply and the metrics are collected and
scanned for the markers."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from sqlalchemy import update

from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.notifier.__main__ import MIGRATIONS_DIR as NOTIFIER_MIGRATIONS
from services.notifier.app import create_app as create_notifier
from services.notifier.db import outbox
from services.notifier.settings import NotifierSettings
from services.scorer.app import create_app as create_scorer
from services.scorer.settings import ScorerSettings
from shared.db import upgrade_database
from shared.observability import JsonFormatter, metrics_payload
from shared.schemas import SCORE_CODEC, Level
from shared.server import service_main
from tests.notifier.conftest import FakeClock, make_snapshot
from tools.localstack import TansuBroker, free_port


def marker(name: str) -> str:
    """A unique random value (``name`` documents which secret it plays; it is not part of
    the value, so every piece of the value is random)."""
    return "s" + uuid.uuid4().hex[:23]


#: service -> {environment variable: marker}; every secret each service reads.
def secret_env() -> dict[str, dict[str, str]]:
    hex_key = uuid.uuid4().hex  # SM4 keys must be 32 hex characters: itself the marker
    return {
        "ingest": {
            "VTR_API_KEYS": marker("apikey1") + "," + marker("apikey2"),
            "VTR_CHINAPOST_SM4_KEY": hex_key,
            "VTR_CHINAPOST_DIGEST_KEY": marker("digest"),
            "VTR_YUNEXPRESS_SECRET": marker("yunexpress"),
            "VTR_YANWEN_TOKEN": marker("yanwen"),
            "VTR_17TRACK_API_KEY": marker("17track"),
            "VTR_AFTERSHIP_SECRET": marker("aftership"),
            "VTR_KAFKA_SASL_PASSWORD": marker("sasl"),
        },
        "scorer": {
            "VTR_API_KEYS": marker("apikey"),
            "VTR_KAFKA_SASL_PASSWORD": marker("sasl"),
            "VTR_DATABASE_URL": f"postgresql+asyncpg://vtr:{marker('dbpassword')}@127.0.0.1:1/vtr",
        },
        "notifier": {
            "VTR_API_KEYS": marker("apikey"),
            "VTR_SCORER_API_KEY": marker("scorerkey"),
            "VTR_SMTP_URL": f"smtp://alerts:{marker('smtppassword')}@127.0.0.1:25",
            "VTR_KAFKA_SASL_PASSWORD": marker("sasl"),
            "VTR_DATABASE_URL": f"postgresql+asyncpg://vtr:{marker('dbpassword')}@127.0.0.1:1/vtr",
        },
    }


SETTINGS = {"ingest": IngestSettings, "scorer": ScorerSettings, "notifier": NotifierSettings}
FACTORIES = {"ingest": create_ingest, "scorer": create_scorer, "notifier": create_notifier}


def values_of(env: dict[str, str]) -> list[str]:
    """The secret parts of each variable (a database URL's password, each API key)."""
    found = []
    for value in env.values():
        if "://" in value:
            found.append(value.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1])
        else:
            found.extend(value.split(","))
    return found


def fragments(secret: str, width: int = 10) -> set[str]:
    """Overlapping pieces of a secret: a truncated echo (``'api_keys...wen_token': 'SEC``)
    still contains one of them."""
    if len(secret) <= width:
        return {secret}
    return {secret[start : start + width] for start in range(0, len(secret) - width + 1, width // 2)} | {
        secret[-width:]
    }


def assert_clean(texts: list[str], secrets: list[str]) -> None:
    pieces = {piece: secret for secret in secrets for piece in fragments(secret)}
    for text in texts:
        for piece, secret in pieces.items():
            assert piece not in text, f"secret {secret[:8]}... (piece {piece!r}) echoed in: {text[:400]}"


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured_logs() -> Iterator[Captured]:
    handler = Captured()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


def refusal_cases() -> list[tuple[str, str, str]]:
    cases = []
    for service, env in secret_env().items():
        for name in env:
            if name == "VTR_KAFKA_SASL_PASSWORD":
                continue
            if name == "VTR_DATABASE_URL":
                cases.append((service, name, "sqlite"))
                continue
            cases.append((service, name, "dev-default"))
            cases.append((service, name, "missing"))
        cases.append((service, "VTR_KAFKA_TOPIC_PARTITIONS", "invalid"))
    cases.append(("ingest", "VTR_CHINAPOST_SM4_KEY", "invalid"))
    cases.append(("notifier", "VTR_SMTP_URL", "invalid"))
    return cases


@pytest.mark.parametrize(("service", "variable", "case"), refusal_cases())
def test_refusing_to_start_names_the_variable_and_no_secret(
    service: str,
    variable: str,
    case: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    captured_logs: Captured,
) -> None:
    env = secret_env()[service]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("VTR_ENV", "prod")
    secrets = values_of(env)
    if case == "missing":
        monkeypatch.delenv(variable)
    elif case == "sqlite":
        monkeypatch.setenv(variable, "sqlite+aiosqlite:///vtr.db")
    elif case == "dev-default":
        monkeypatch.setenv(variable, "dev-" + marker("devvalue"))
    elif variable == "VTR_CHINAPOST_SM4_KEY":
        monkeypatch.setenv(variable, marker("nothex"))
        secrets.append(os.environ[variable])
    elif variable == "VTR_SMTP_URL":
        bad = marker("smtppassword")
        monkeypatch.setenv(variable, f"smtp://alerts:{bad}/x@host:25")
        secrets.append(bad)
    else:
        monkeypatch.setenv(variable, "lots")

    def refuse_to_serve(_settings: Any) -> Any:
        raise AssertionError("the service should have refused to start")

    with pytest.raises((SystemExit, ValueError)) as refused:
        # The real entry point: settings, then (only if they pass) the app factory.
        service_main(SETTINGS[service], FACTORIES[service] if case == "invalid" else refuse_to_serve, None, [])  # type: ignore[arg-type]
    out = capsys.readouterr()
    texts = [out.out, out.err, str(refused.value), repr(refused.value), *captured_logs.lines]
    assert_clean(texts, secrets)
    if case != "invalid" or variable != "VTR_SMTP_URL":
        shown = variable.removeprefix("VTR_").lower() if case == "invalid" else variable
        assert any(shown in text or variable in text for text in texts), texts


async def test_failure_paths_of_the_running_services_echo_no_secret(
    captured_logs: Captured,
    new_postgres_database: Any,
    kafka_broker: TansuBroker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    envs = secret_env()
    secrets = [secret for env in envs.values() for secret in values_of(env)]
    texts: list[str] = []

    # Stand-ins: a scorer that refuses every key, a Slack that is not there.
    async def refuse(_: web.Request) -> web.Response:
        return web.json_response({"detail": "missing or invalid bearer token"}, status=401)

    stand_in = web.Application()
    stand_in.router.add_get("/v1/sellers/{seller_id}/shipments", refuse)
    runner = web.AppRunner(stand_in)
    await runner.setup()
    scorer_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", scorer_port).start()
    slack_hook = f"http://127.0.0.1:{free_port()}/services/{marker('slackhook')}/hook"
    secrets.append(slack_hook.split("/services/")[1].split("/")[0])

    # The notifier on PostgreSQL reached with a password (trust auth ignores it).
    url = (await asyncio.to_thread(new_postgres_database)).replace("postgres@", f"postgres:{marker('pgpw')}@", 1)
    secrets.append(url.split("postgres:", 1)[1].split("@", 1)[0])
    await asyncio.to_thread(upgrade_database, NOTIFIER_MIGRATIONS, url)
    notifier_env = envs["notifier"]
    notifier = create_notifier(
        NotifierSettings(
            database_url=url,
            kafka_bootstrap=kafka_broker.bootstrap,
            api_keys=notifier_env["VTR_API_KEYS"],  # type: ignore[arg-type]
            scorer_api_key=notifier_env["VTR_SCORER_API_KEY"],  # type: ignore[arg-type]
            smtp_url=f"smtp://alerts:{values_of({'u': notifier_env['VTR_SMTP_URL']})[0]}@127.0.0.1:{free_port()}",  # type: ignore[arg-type]
            scorer_url=f"http://127.0.0.1:{scorer_port}",
            slack_allowed_prefixes="http://127.0.0.1:",  # type: ignore[arg-type]
            slack_allow_private_addresses=True,
            scorer_wait_seconds=0,
            debounce_seconds=0,
            smtp_timeout_seconds=2,
            slack_timeout_seconds=2,
        ),
        clock=FakeClock(),
    )
    key = notifier_env["VTR_API_KEYS"]
    transport = httpx.ASGITransport(app=notifier, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://notifier") as client:
        auth = {"Authorization": f"Bearer {key}"}
        replies = [
            await client.put(
                "/v1/sellers/A1SELLER/subscription",
                json={"emails": ["ops@example.com"], "slack_webhook_url": slack_hook},
                headers=auth,
            ),
            # A secret pasted into the wrong field, a wrong token, a secret as the token.
            await client.put("/v1/sellers/A1SELLER/subscription", json={"emails": [key]}, headers=auth),
            await client.put("/v1/sellers/A1SELLER/subscription", json={"emails": 7, "x": key}, headers=auth),
            await client.get("/v1/sellers/A1SELLER/subscription", headers={"Authorization": f"Bearer {key}x"}),
            await client.get("/v1/sellers/A1SELLER/subscription", headers=auth),
        ]
        runtime = notifier.state.runtime
        from aiokafka import ConsumerRecord

        value = SCORE_CODEC.encode(make_snapshot(Level.BREACH))
        record = ConsumerRecord("s", 0, 0, 0, 0, b"A1SELLER", value, None, 8, len(value), [])
        async with notifier.state.engine.begin() as connection:
            await runtime.processor.apply_batch(connection, [record])
        await runtime.processor.tick(notifier.state.engine)
        await runtime.worker.run_once()  # SMTP down, Slack down, scorer refusing: all retried
        async with notifier.state.engine.begin() as connection:
            await connection.execute(update(outbox).values(next_attempt_at=outbox.c.created_at, rendered="{"))
        await runtime.worker.run_once()  # corrupt rows: the unforeseen-error path
        replies.append(await client.get("/v1/sellers/A1SELLER/notifications", headers=auth))
        replies.append(await client.get("/readyz"))
        replies.append(await client.get("/metrics"))
    await notifier.state.engine.dispose()
    assert replies[0].status_code == 200, replies[0].text
    assert len(replies[-3].json()) == 2, replies[-3].text
    assert "SMTP unavailable" in replies[-3].text or "unexpected" in replies[-3].text
    texts += [reply.text + str(reply.headers) for reply in replies]

    # The scorer and the notifier with their database down (a password in the URL).
    for service in ("scorer", "notifier"):
        env = envs[service]
        settings_type = ScorerSettings if service == "scorer" else NotifierSettings
        settings = settings_type(
            database_url=env["VTR_DATABASE_URL"],
            api_keys=env["VTR_API_KEYS"],  # type: ignore[arg-type]
            kafka_bootstrap=f"127.0.0.1:{free_port()}",
        )
        app = create_scorer(settings, background=False) if service == "scorer" else create_notifier(settings)  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            auth = {"Authorization": f"Bearer {env['VTR_API_KEYS']}"}
            path = "/v1/sellers/A1SELLER/vtr" if service == "scorer" else "/v1/sellers/A1SELLER/subscription"
            for reply in (await client.get(path, headers=auth), await client.get("/readyz")):
                assert reply.status_code == 503, reply.text
                texts.append(reply.text)

    # The ingest: forged signatures, wrong tokens, a secret in a body.
    ingest_env = envs["ingest"]
    for name, value in ingest_env.items():
        monkeypatch.setenv(name, value)
    ingest = create_ingest(IngestSettings(kafka_bootstrap=kafka_broker.bootstrap))
    async with ingest.router.lifespan_context(ingest):
        transport = httpx.ASGITransport(app=ingest, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yanwen = ingest_env["VTR_YANWEN_TOKEN"]
            for source in ("china-post", "yunexpress", "yanwen", "17track", "aftership"):
                reply = await client.post(
                    f"/v1/webhooks/{source}", content=b'{"a": 1}', headers={"Authorization": yanwen + "x"}
                )
                texts.append(reply.text)
            reply = await client.post(
                "/v1/webhooks/yanwen",
                content=b'{"result": 1, "secret": "' + yanwen.encode() + b'"}',
                headers={"Authorization": yanwen},
            )
            texts.append(reply.text)
            api_key = ingest_env["VTR_API_KEYS"].split(",")[0]
            reply = await client.post(
                "/v1/shipments", json={"order_id": api_key}, headers={"Authorization": f"Bearer {api_key}"}
            )
            texts.append(reply.text)
            texts.append((await client.get("/metrics")).text)
    await runner.cleanup()

    texts.append(metrics_payload()[0].decode())
    texts += captured_logs.lines
    # The failure paths did run: SMTP down, then the corrupt rows' unforeseen error.
    assert any("notification could not be delivered" in line for line in captured_logs.lines)
    assert_clean(texts, secrets)
