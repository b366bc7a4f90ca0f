"""The operator CLI for API keys. It talks to Kafka only, with the services' connection
settings (``VTR_KAFKA_BOOTSTRAP``, ``VTR_KAFKA_SECURITY_PROTOCOL``, ``VTR_KAFKA_SASL_*``);
on a production cluster the SASL user must be the admin principal, the only one allowed
to write the credentials topic.

    python -m shared.credentials issue --seller A1SELLER --scope scores:read [--scope ...] [--expires-days 90]
    python -m shared.credentials issue --staff [--scope admin]
    python -m shared.credentials issue --service notifier --scope scores:read
    python -m shared.credentials revoke KEY_ID
    python -m shared.credentials list [--seller A1SELLER] [--revoked]

``issue`` prints ``key_id: ...`` and ``token: ...`` on their own lines: the token is shown
this once and stored nowhere (only its SHA-256). ``list`` never prints a token.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime, timedelta
from typing import ClassVar, TextIO

import msgspec
from aiokafka.errors import KafkaError

from shared.credentials.follower import credential_topics, read_topic_to_end
from shared.credentials.scopes import DEFAULT_STAFF_SCOPES, KeyKind, Scope, scope_problem
from shared.credentials.tokens import (
    CREDENTIAL_CODEC,
    CREDENTIAL_DECODER,
    USAGE_DECODER,
    CredentialRecord,
    new_key_id,
    new_token,
    operator_name,
    token_digest,
)
from shared.kafka import ensure_topics, make_consumer, make_producer
from shared.settings import ServiceSettings

#: Longest seller id the services store.
MAX_SELLER_ID = 128


class CliSettings(ServiceSettings):
    """Only the Kafka settings matter here: the CLI keeps no database and serves nothing."""

    service_name: ClassVar[str] = "credentials-cli"

    def _refuse_unsafe_prod_config(self) -> None:
        return None


class CliError(Exception):
    pass


def new_record(
    kind: KeyKind,
    scopes: list[str],
    *,
    seller_id: str | None = None,
    label: str | None = None,
    expires_days: float | None = None,
    now: datetime | None = None,
) -> tuple[CredentialRecord, str]:
    """A new key's record and its token (the only time the token exists)."""
    chosen = frozenset(scopes) if scopes else (DEFAULT_STAFF_SCOPES if kind is KeyKind.STAFF else frozenset())
    problem = scope_problem(kind, frozenset(str(scope) for scope in chosen))
    if problem:
        raise CliError(problem)
    valid_seller = (
        bool(seller_id) and len(seller_id or "") <= MAX_SELLER_ID and not any(c.isspace() for c in seller_id or "")
    )
    if kind is KeyKind.SELLER and not valid_seller:
        raise CliError(f"--seller must be a seller id of 1 to {MAX_SELLER_ID} characters without spaces")
    moment = now or datetime.now(UTC)
    key_id = new_key_id()
    token = new_token(key_id)
    record = CredentialRecord(
        key_id=key_id,
        kind=kind.value,
        scopes=sorted(str(scope) for scope in chosen),
        token_sha256=token_digest(token.encode()).hex(),
        issued_at=moment,
        seller_id=seller_id if kind is KeyKind.SELLER else None,
        label=label,
        expires_at=moment + timedelta(days=expires_days) if expires_days is not None else None,
        issued_by=operator_name(),
    )
    return record, token


async def write(settings: ServiceSettings, record: CredentialRecord) -> None:
    await ensure_topics(settings, credential_topics(settings))
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.credentials_topic, key=record.key_id.encode(), value=CREDENTIAL_CODEC.encode(record)
        )
    finally:
        await producer.stop()


async def read_all(settings: ServiceSettings) -> tuple[dict[str, CredentialRecord], dict[str, datetime]]:
    """Every key's latest record, and when any instance last reported using it."""
    await ensure_topics(settings, credential_topics(settings))
    records: dict[str, CredentialRecord] = {}
    last_used: dict[str, datetime] = {}

    def on_credential(key: bytes | None, value: bytes | None) -> None:
        if value is None:
            if key:
                records.pop(key.decode("utf-8", "replace"), None)
            return
        try:
            record = CREDENTIAL_DECODER.decode(value)
        except msgspec.DecodeError:
            return
        records[record.key_id] = record

    def on_usage(_key: bytes | None, value: bytes | None) -> None:
        if value is None:
            return
        try:
            usage = USAGE_DECODER.decode(value)
        except msgspec.DecodeError:
            return
        if usage.key_id not in last_used or usage.last_used_at > last_used[usage.key_id]:
            last_used[usage.key_id] = usage.last_used_at

    for topic, handler in ((settings.credentials_topic, on_credential), (settings.credential_usage_topic, on_usage)):
        consumer = make_consumer(settings, group_id=None)
        await consumer.start()
        try:
            await read_topic_to_end(consumer, topic, handler)
        finally:
            await consumer.stop()
    return records, last_used


async def revoke(settings: ServiceSettings, key_id: str, now: datetime | None = None) -> CredentialRecord:
    records, _ = await read_all(settings)
    record = records.get(key_id)
    if record is None:
        raise CliError(f"no key {key_id}")
    if record.revoked_at is not None:
        return record
    revoked = msgspec.structs.replace(record, revoked_at=now or datetime.now(UTC), revoked_by=operator_name())
    await write(settings, revoked)
    return revoked


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment is not None else "-"


def render_list(
    records: dict[str, CredentialRecord], last_used: dict[str, datetime], seller: str | None, revoked: bool
) -> list[str]:
    shown = [
        record
        for record in sorted(records.values(), key=lambda r: r.issued_at)
        if (seller is None or record.seller_id == seller) and (revoked or record.revoked_at is None)
    ]
    header = f"{'key_id':<12}  {'kind':<7}  {'seller / label':<16}  {'issued':<16}  {'expires':<16}"
    lines = [header + "  last used / revoked"]
    for record in shown:
        owner = record.seller_id or record.label or "-"
        status = f"revoked {_when(record.revoked_at)}" if record.revoked_at else _when(last_used.get(record.key_id))
        lines.append(
            f"{record.key_id:<12}  {record.kind:<7}  {owner[:16]:<16}  {_when(record.issued_at):<16}  "
            f"{_when(record.expires_at):<16}  {status}"
        )
        lines.append(f"{'':<12}  scopes: {' '.join(record.scopes)}")
    return lines


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m shared.credentials", description="Issue, revoke and list API keys.")
    commands = root.add_subparsers(dest="command", required=True)
    issue = commands.add_parser("issue", help="issue a key; prints key_id and token (shown once)")
    kind = issue.add_mutually_exclusive_group(required=True)
    kind.add_argument("--seller", metavar="SELLER_ID", help="a seller key, bound to this seller")
    kind.add_argument("--staff", action="store_true", help="a staff key (every seller)")
    kind.add_argument("--service", metavar="NAME", help="a service key for NAME's calls (every seller)")
    issue.add_argument(
        "--scope",
        action="append",
        default=[],
        choices=[scope.value for scope in Scope],
        help="repeatable; a staff key without --scope gets every scope but admin",
    )
    issue.add_argument("--expires-days", type=float, metavar="N", help="the key stops working N days from now")
    issue.add_argument("--label", help="a note shown by list (what the key is for)")
    revoke_command = commands.add_parser("revoke", help="revoke a key (every service refuses it within seconds)")
    revoke_command.add_argument("key_id")
    listing = commands.add_parser("list", help="list keys (never a token)")
    listing.add_argument("--seller", metavar="SELLER_ID")
    listing.add_argument("--revoked", action="store_true", help="include revoked keys")
    return root


async def run(arguments: argparse.Namespace, settings: ServiceSettings, out: TextIO, err: TextIO) -> None:
    if arguments.command == "issue":
        if arguments.expires_days is not None and not 0 < arguments.expires_days <= 3650:
            raise CliError("--expires-days must be between 0 and 3650")
        kind = KeyKind.SELLER if arguments.seller else KeyKind.SERVICE if arguments.service else KeyKind.STAFF
        record, token = new_record(
            kind,
            arguments.scope,
            seller_id=arguments.seller,
            label=arguments.service or arguments.label,
            expires_days=arguments.expires_days,
        )
        await write(settings, record)
        out.write(f"key_id: {record.key_id}\ntoken: {token}\n")
        err.write(
            f"{kind.value} key with scopes {', '.join(record.scopes)}"
            + (f" for seller {record.seller_id}" if record.seller_id else "")
            + (f", expires {_when(record.expires_at)} UTC" if record.expires_at else "")
            + ". The token is shown this once: store it now.\n"
        )
    elif arguments.command == "revoke":
        record = await revoke(settings, arguments.key_id)
        out.write(f"revoked: {record.key_id} at {_when(record.revoked_at)} UTC\n")
    else:
        records, last_used = await read_all(settings)
        out.write("\n".join(render_list(records, last_used, arguments.seller, arguments.revoked)) + "\n")


def main(argv: list[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    arguments = parser().parse_args(argv)
    try:
        settings = CliSettings()
        asyncio.run(asyncio.wait_for(run(arguments, settings, out, err), timeout=60))
    except CliError as error:
        err.write(f"error: {error}\n")
        return 1
    except (OSError, TimeoutError, KafkaError) as error:
        err.write(f"error: Kafka unreachable at {CliSettings().kafka_bootstrap} ({type(error).__name__})\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
