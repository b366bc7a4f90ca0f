"""Structured JSON logs and the HTTP metrics every service exports.

Metric labels never carry seller ids, tracking numbers or addresses: only bounded sets
(route templates, carriers, statuses, outcomes).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged.
_STANDARD_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "vtr_http_requests_total", "HTTP requests by route, method and status.", ["route", "method", "status"]
)
HTTP_DURATION = Histogram(
    "vtr_http_request_duration_seconds", "HTTP request duration by route.", ["route", "method"], buckets=LATENCY_BUCKETS
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_RECORD_ATTRIBUTES:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """One readable line per record for a person at a terminal: time, level, logger,
    message, then the ``extra=`` fields as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        fields = " ".join(
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _STANDARD_RECORD_ATTRIBUTES and key != "color_message"  # uvicorn's ANSI copy of msg
        )
        line = f"{moment} {record.levelname:<7} {record.name.removeprefix('services.')}: {record.getMessage()}"
        line = f"{line}  {fields}" if fields else line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def in_container() -> bool:
    """Whether this process runs in a container (Kubernetes, Docker), where logs go to a
    collector that reads JSON."""
    return "KUBERNETES_SERVICE_HOST" in os.environ or os.path.exists("/.dockerenv")


def wants_text_logs(log_format: str = "auto", env: str = "dev") -> bool:
    """``auto``: text for a person at a terminal, JSON in prod, in containers and in pipes."""
    if log_format != "auto":
        return log_format == "text"
    return env != "prod" and sys.stderr.isatty() and not in_container()


def configure_logging(level: str = "INFO", text: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if text else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at ERROR while a broker is down; one line is enough.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL if level.upper() != "DEBUG" else logging.DEBUG)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    quiet_request_loggers()


def quiet_request_loggers() -> None:
    """Loggers that would write request URLs, which carry seller ids, at INFO: the access
    log, and httpx's line per request (the notifier asks the scorer, the console the
    notifier, both with the seller id in the path)."""
    for name in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def metrics_payload() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST


class HttpMetricsMiddleware:
    """Pure ASGI middleware (no per-request Starlette objects) counting requests by route
    template, so ``/v1/sellers/{seller_id}/vtr`` is one series, not one per seller."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            HTTP_REQUESTS.labels(template, method, str(status_code)).inc()
            HTTP_DURATION.labels(template, method).observe(time.perf_counter() - started)
