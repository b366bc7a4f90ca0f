"""The operator CLI against a real broker, and a follower seeing what it writes."""

from __future__ import annotations

import asyncio
import io
import time

import pytest
from aiokafka import AIOKafkaClient

from services.ingest.settings import IngestSettings
from shared.credentials import __main__ as cli_module
from shared.credentials.access import Credentials, Refusal
from shared.credentials.scopes import KeyKind, Principal, Scope
from shared.kafka import client_config
from shared.settings import ServiceSettings
from tests.credentials.conftest import Cli


def test_issue_prints_the_key_id_and_the_token_on_their_own_lines(cli: Cli) -> None:
    run = cli(
        "issue", "--seller", "A1SELLER", "--scope", "scores:read", "--scope", "shipments:write", "--expires-days", "30"
    )
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert [line.split(": ")[0] for line in lines] == ["key_id", "token"]
    assert run.field("token").startswith(f"vtr_sk_{run.field('key_id')}_")
    assert "shown this once" in run.err and run.field("token") not in run.err


def test_list_shows_keys_but_never_a_token_or_its_hash(cli: Cli) -> None:
    seller = cli("issue", "--seller", "A1SELLER", "--scope", "scores:read")
    staff = cli("issue", "--staff", "--scope", "admin")
    service = cli("issue", "--service", "notifier", "--scope", "scores:read")
    other = cli("issue", "--seller", "B2SELLER", "--scope", "console:read")
    listing = cli("list")
    assert listing.code == 0
    for run in (seller, staff, service, other):
        assert run.field("key_id") in listing.out
        token = run.field("token")
        assert token not in listing.out and token[len("vtr_sk_") + 13 :] not in listing.out
    assert "sha256" not in listing.out.lower()
    only_a1 = cli("list", "--seller", "A1SELLER")
    assert seller.field("key_id") in only_a1.out and other.field("key_id") not in only_a1.out
    assert "notifier" in listing.out and "admin" in listing.out


def test_bad_requests_exit_non_zero_with_a_reason(cli: Cli) -> None:
    assert cli("revoke", "0123456789ab").code == 1
    refused = cli("issue", "--seller", "A1SELLER", "--scope", "admin")
    assert refused.code == 1 and "only staff" in refused.err and refused.out == ""
    with pytest.raises(SystemExit):
        cli("issue", "--seller", "A1SELLER", "--scope", "everything")


async def test_a_follower_sees_an_issued_key_and_its_revocation_within_seconds(
    cli: Cli, credential_env: dict[str, str]
) -> None:
    settings = ServiceSettings(credential_usage_flush_seconds=0.2)  # type: ignore[call-arg]
    credentials = Credentials.from_settings(settings)
    await credentials.start()
    try:
        issued = await asyncio.to_thread(cli, "issue", "--seller", "A1SELLER", "--scope", "scores:read")
        bearer = f"Bearer {issued.field('token')}"
        started = time.monotonic()
        while not isinstance(credentials.gate.check(bearer, Scope.SCORES_READ, "A1SELLER"), Principal):
            assert time.monotonic() - started < 10, "the issued key never arrived"
            await asyncio.sleep(0.05)
        principal = credentials.gate.check(bearer, Scope.SCORES_READ, "A1SELLER")
        assert isinstance(principal, Principal) and principal.kind is KeyKind.SELLER
        await asyncio.sleep(0.6)  # one usage report
        listing = await asyncio.to_thread(cli, "list")
        (row,) = [line for line in listing.out.splitlines() if line.startswith(issued.field("key_id"))]
        assert not row.rstrip().endswith("-"), "last used is reported"
        revoked = await asyncio.to_thread(cli, "revoke", issued.field("key_id"))
        assert revoked.code == 0 and revoked.out.startswith("revoked: ")
        started = time.monotonic()
        while isinstance(credentials.gate.check(bearer, Scope.SCORES_READ, "A1SELLER"), Principal):
            assert time.monotonic() - started < 10, "revocation not seen within 10 s"
            await asyncio.sleep(0.05)
        assert credentials.gate.check(bearer, Scope.SCORES_READ, "A1SELLER") == Refusal(
            401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"}
        )
        assert issued.field("key_id") not in (await asyncio.to_thread(cli, "list")).out
        assert issued.field("key_id") in (await asyncio.to_thread(cli, "list", "--revoked")).out
    finally:
        await credentials.stop()


PRODUCTION_KAFKA = {
    # A port nothing listens on: the clients are built, then fail to connect.
    "VTR_KAFKA_BOOTSTRAP": "127.0.0.1:9",
    "VTR_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "VTR_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "VTR_KAFKA_SASL_USERNAME": "vtrwatch-admin",
    "VTR_KAFKA_SASL_PASSWORD": "the-admin-principals-password",
}


@pytest.mark.parametrize("command", [("issue", "--staff"), ("list",)])
def test_the_cli_connects_with_the_services_sasl_and_tls_settings(
    command: tuple[str, ...], credential_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local broker (Tansu 0.6 with in-memory storage) cannot hold SASL users, so this
    inspects the real aiokafka clients the CLI builds from a production cluster's settings
    (the services' own variables) and the error it reports when that cluster is away."""
    for name, value in PRODUCTION_KAFKA.items():
        monkeypatch.setenv(name, value)
    built: list[AIOKafkaClient] = []
    make_producer, make_consumer = cli_module.make_producer, cli_module.make_consumer

    def recorded_producer(settings: ServiceSettings, **overrides: object) -> object:
        producer = make_producer(settings, **overrides)
        built.append(producer.client)
        return producer

    def recorded_consumer(settings: ServiceSettings, *topics: str, group_id: str | None) -> object:
        consumer = make_consumer(settings, *topics, group_id=group_id)
        built.append(consumer._client)
        return consumer

    async def topics_exist(_settings: ServiceSettings, _specs: object) -> dict[str, int]:
        return {}  # the admin client's own config is client_config's too (compared below)

    monkeypatch.setattr(cli_module, "make_producer", recorded_producer)
    monkeypatch.setattr(cli_module, "make_consumer", recorded_consumer)
    monkeypatch.setattr(cli_module, "ensure_topics", topics_exist)
    out, err = io.StringIO(), io.StringIO()
    assert cli_module.main(list(command), out, err) == 2
    assert "Kafka unreachable at 127.0.0.1:9" in err.getvalue()
    assert PRODUCTION_KAFKA["VTR_KAFKA_SASL_PASSWORD"] not in err.getvalue() + out.getvalue()
    assert built, "the CLI built no Kafka client"
    for client in built:
        assert client._security_protocol == "SASL_SSL" and client._ssl_context is not None
        assert client._sasl_mechanism == "SCRAM-SHA-512"
        assert client._sasl_plain_username == "vtrwatch-admin"
        assert client._sasl_plain_password == PRODUCTION_KAFKA["VTR_KAFKA_SASL_PASSWORD"]
    # One settings class and one config function for the CLI and the services.
    cli_config, service_config = client_config(cli_module.CliSettings()), client_config(IngestSettings())
    for option in ("bootstrap_servers", "security_protocol", "sasl_mechanism", "sasl_plain_username"):
        assert cli_config[option] == service_config[option]
    assert cli_config["sasl_plain_password"] == service_config["sasl_plain_password"]
