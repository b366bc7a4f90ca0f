"""Issue 14, section 1: a client that disconnects in the middle of its body is not an
error: no exception escapes the app and nothing is logged above INFO, on the ingest's
webhook fast path, its shipment API and the guarded routes of the scorer and notifier."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.notifier.app import create_app as create_notifier
from services.notifier.settings import NotifierSettings
from tools.localstack import TansuBroker


def scope(method: str, path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000"),
                    (b"authorization", b"Bearer k")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }  # fmt: skip


async def call_and_disconnect(app: Callable[..., Any], method: str, path: str) -> list[dict[str, Any]]:
    messages = iter([{"type": "http.request", "body": b'{"emails": ["a', "more_body": True}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages, {"type": "http.disconnect"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope(method, path), receive, send)
    return sent


@pytest.mark.parametrize(
    ("service", "method", "path"),
    [
        ("ingest", "POST", "/v1/webhooks/17track"),
        ("ingest", "POST", "/v1/shipments"),
        ("ingest", "POST", "/v1/shipments/RR123456785CN/cancel"),
        ("notifier", "PUT", "/v1/sellers/A1SELLER/subscription"),
    ],
)
async def test_a_client_gone_mid_body_is_not_an_error(
    service: str,
    method: str,
    path: str,
    kafka_broker: TansuBroker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    if service == "ingest":
        app: Any = create_ingest(IngestSettings(kafka_bootstrap=kafka_broker.bootstrap, api_keys="k"))  # type: ignore[arg-type]
    else:
        app = create_notifier(NotifierSettings(database_url=f"sqlite+aiosqlite:///{tmp_path}/n.db", api_keys="k"))  # type: ignore[arg-type]
    await call_and_disconnect(app, method, path)  # raises if anything escapes the app
    assert [r.getMessage() for r in caplog.records if r.levelno > logging.INFO] == []
    assert any("disconnected" in r.getMessage() for r in caplog.records)
