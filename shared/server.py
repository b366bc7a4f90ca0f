"""Command-line entry point shared by the services.

``python -m services.<name>`` serves the HTTP API (and the service's background work,
started from the app's lifespan); ``python -m services.<name> migrate`` applies the
service's database migrations and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from shared.consumer import offsets_command
from shared.consumer.offsets_command import ConsumerOffsets
from shared.db import upgrade_database
from shared.observability import configure_logging, wants_text_logs
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)


def serve(app: FastAPI, settings: ServiceSettings, http: type[asyncio.Protocol] | str = "httptools") -> None:
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        loop="uvloop",
        http=http,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.drain_seconds),
    )
    uvicorn.Server(config).run()


def service_main(
    settings_factory: Callable[[], ServiceSettings],
    app_factory: Callable[[ServiceSettings], FastAPI],
    migrations_dir: Path | None = None,
    argv: list[str] | None = None,
    consumer_offsets: Callable[[Any], ConsumerOffsets] | None = None,
    http: type[asyncio.Protocol] | str = "httptools",
) -> None:
    """``consumer_offsets``: where the service stores its consumer offsets, which enables
    the ``offsets show|reset`` command (see :mod:`shared.consumer.offsets_command`).
    ``http``: uvicorn's HTTP protocol (e.g. :class:`shared.http_protocol.OneWriteHttpToolsProtocol`)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser()
    choices = ["serve", "migrate", *(["offsets"] if consumer_offsets is not None else [])]
    parser.add_argument("command", nargs="?", default="serve", choices=choices)
    args = parser.parse_args(arguments[:1])
    try:
        settings = settings_factory()
    except ValidationError as error:
        # One line per problem, naming the variable; never the value (it may be a secret).
        configure_logging("INFO")
        problems = [
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors(include_input=False)
        ]
        log.critical("refusing to start: invalid settings", extra={"problems": problems})
        raise SystemExit(2) from None
    configure_logging(settings.log_level, wants_text_logs(settings.log_format, settings.env))
    if args.command == "offsets":
        assert consumer_offsets is not None
        offsets_command.main(settings, consumer_offsets(settings), arguments[1:])
    if args.command == "migrate":
        if migrations_dir is None:
            log.info("this service keeps no database; nothing to migrate")
            return
        upgrade_database(migrations_dir, settings.database_url)
        log.info("database migrated", extra={"service": settings.service_name})
        return
    serve(app_factory(settings), settings, http)
