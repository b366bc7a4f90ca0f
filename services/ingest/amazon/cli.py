"""``python -m services.ingest amazon <command>``: the Amazon worker and the operator's
commands (docs/amazon.md, "For operators").

    amazon worker
    amazon connect --seller ID --selling-partner-id X --region na|eu|fe --refresh-token-file FILE
    amazon disconnect --seller ID --region na|eu|fe
    amazon status [--seller ID]

``connect`` is the operator's path for a seller who authorised the app another way (a
self-authorised private app, or a refresh token handed over securely): the token is read
from a file (never from the command line, where ``ps`` and shell history would show it),
checked once at Login with Amazon, sealed and stored like one from the website flow.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

from services.ingest.amazon.client import AmazonError, AuthorisationRevoked, LoginWithAmazon
from services.ingest.amazon.marketplaces import REGIONS
from services.ingest.amazon.notices import OPERATOR, connection_changed
from services.ingest.amazon.sealing import SealedToken, TokenKeys
from services.ingest.amazon.state import Connection, read_state, state_record, summary
from services.ingest.publisher import Publisher
from services.ingest.settings import IngestSettings
from services.ingest.vendor_calls import Retryable
from shared.credentials.tokens import operator_name
from shared.observability import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.ingest amazon")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="read orders and reports of every connected seller until SIGTERM")
    connect = commands.add_parser("connect", help="connect a seller with a refresh token from a file")
    connect.add_argument("--seller", required=True)
    connect.add_argument("--selling-partner-id", required=True)
    connect.add_argument("--region", required=True, choices=REGIONS)
    connect.add_argument("--refresh-token-file", required=True, type=Path)
    disconnect = commands.add_parser("disconnect", help="stop reading a seller's Amazon data and drop its token")
    disconnect.add_argument("--seller", required=True)
    disconnect.add_argument("--region", required=True, choices=REGIONS)
    status = commands.add_parser("status", help="connections, cursors and last reports (never a token)")
    status.add_argument("--seller")
    return parser


def _operator_connection(args: argparse.Namespace, selling_partner_id: str, sealed: SealedToken | None) -> Connection:
    """A connection record written by an operator; without a sealed token it disconnects."""
    return Connection(
        seller_id=args.seller,
        region=args.region,
        selling_partner_id=selling_partner_id,
        changed_at=datetime.now(UTC),
        token_key_id=sealed.key_id if sealed else None,
        token_nonce=sealed.nonce if sealed else None,
        token_ciphertext=sealed.ciphertext if sealed else None,
        via="operator",
    )


async def _publish(settings: IngestSettings, connection: Connection) -> None:
    publisher = Publisher(settings)
    await publisher.start()
    try:
        reason = f"amazon {'connect' if connection.sealed else 'disconnect'} run by {operator_name()}"
        await publisher.publish([state_record(connection), connection_changed(connection, OPERATOR, reason)])
    finally:
        await publisher.stop()


async def _connect(settings: IngestSettings, args: argparse.Namespace) -> int:
    token = args.refresh_token_file.read_text(encoding="utf-8").strip()
    if not token:
        print(f"{args.refresh_token_file} is empty", file=sys.stderr)
        return 2
    async with httpx.AsyncClient(timeout=settings.registration_timeout_seconds) as http:
        lwa = LoginWithAmazon(
            http, settings.lwa_token_url, settings.lwa_client_id, settings.lwa_client_secret.get_secret_value()
        )
        try:
            await lwa.access_token(token, "check")
        except AuthorisationRevoked:
            print(
                "Login with Amazon refused this refresh token (invalid_grant): ask the seller to authorise again",
                file=sys.stderr,
            )
            return 1
        except (Retryable, AmazonError) as error:
            print(f"Login with Amazon could not check the token: {error}", file=sys.stderr)
            return 1
    keys = TokenKeys.parse(settings.amazon_token_key.get_secret_value())
    sealed = keys.seal(token, f"{args.seller}|{args.selling_partner_id}|{args.region}")
    await _publish(settings, _operator_connection(args, args.selling_partner_id, sealed))
    print(f"connected {args.seller} ({args.region}); the worker reads its orders and report on its next turn")
    return 0


async def _disconnect(settings: IngestSettings, args: argparse.Namespace) -> int:
    book = await read_state(settings)
    known = book.connections.get((args.seller, args.region))
    if known is None:
        print(f"{args.seller} has no {args.region} connection", file=sys.stderr)
        return 1
    await _publish(settings, _operator_connection(args, known.selling_partner_id, None))
    print(f"disconnected {args.seller} ({args.region}); its refresh token is dropped")
    return 0


async def _status(settings: IngestSettings, args: argparse.Namespace) -> int:
    book = await read_state(settings)
    keys = [key for key in book.connections if args.seller in (None, key[0])]
    sys.stdout.write(orjson.dumps(summary(book, keys), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "worker":
        from services.ingest.amazon.worker import main as worker

        return worker()
    settings = IngestSettings()
    configure_logging(settings.log_level)
    command = {"connect": _connect, "disconnect": _disconnect, "status": _status}[args.command]
    return asyncio.run(command(settings, args))
