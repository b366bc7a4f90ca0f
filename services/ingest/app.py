"""Wires the ingest service: settings -> publisher -> routes, with the lifespan that
creates the topics, starts the producer and, on shutdown (after uvicorn drained the
in-flight requests), flushes it."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import Receive, Scope, Send

from services.ingest.amazon.routes import amazon_router
from services.ingest.api import shipments
from services.ingest.api.openapi import OPENAPI_COMPONENTS
from services.ingest.api.webhooks import WebhookFastPath, webhook_routes
from services.ingest.publisher import Publisher
from services.ingest.settings import IngestSettings
from shared.credentials.access import Credentials
from shared.credentials.scopes import Scope as KeyScope
from shared.guard import EdgeGuard, install_error_handlers, target_is_clean
from shared.http import operations_router
from shared.kafka import broker_reachable
from shared.observability import HttpMetricsMiddleware

DESCRIPTION = """Carrier tracking webhooks and sellers' shipment confirmations onto Kafka.

A 2xx means the records are on Kafka (acks=all). See docs/ingest.md and docs/carriers.md."""


#: Net allocations between young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 20_000


def tune_garbage_collector() -> None:
    """Freeze the start-up objects and collect the young generation less often.

    Everything built at start-up (FastAPI, pydantic, prometheus, aiokafka: ~150k objects)
    lives as long as the process: frozen, full collections no longer walk it (they took
    ~0.1 s each, a few times a minute under load). A webhook's own objects are freed by
    reference counting when it is answered, but the 32 requests in flight and their
    batches hold a few thousand at any time, so with CPython's 700 a young collection
    ran every ~40 webhooks and walked them: 3.6-4.8 us of collector time per webhook,
    about 3% of the process's CPU (gc callbacks timing every collection, 16-21k webhooks
    at 32 connections, 2026-12-08). At 20,000 no collection ran in those 8-second runs;
    cycles (exceptions with their tracebacks, ...) are still collected, later."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


class IngestApp(FastAPI):
    """The ingest's FastAPI app, with carrier webhooks dispatched before FastAPI's own
    middleware stack: on a single-event webhook, the layers between uvicorn and the handler
    (Starlette's error middleware, FastAPI's telemetry and body-limit wrappers, the metrics
    middleware and its send wrapper, route matching) cost about a fifth of the request's
    CPU time. Everything else goes through FastAPI as usual."""

    #: None serves webhooks through the router like any other route (tests check both).
    webhook_fast_path: WebhookFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast_path = self.webhook_fast_path
        if fast_path is not None and scope["type"] == "http" and scope["method"] == "POST":
            target = fast_path.by_path.get(scope["path"])
            # A path or query the decoding guard refuses goes through EdgeGuard (a 400 saying why).
            if target is not None and target_is_clean(scope):
                await fast_path.serve(target, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: IngestSettings) -> IngestApp:
    publisher = Publisher(settings)
    credentials = Credentials.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await publisher.start()
        await credentials.start()
        tune_garbage_collector()
        try:
            yield
        finally:
            await credentials.stop()
            await publisher.stop()

    app = IngestApp(title="vtrwatch ingest", description=DESCRIPTION, version="1", lifespan=lifespan)
    app.state.settings = settings
    app.state.publisher = publisher
    app.state.credentials = credentials
    webhooks = webhook_routes(settings, publisher)
    app.webhook_fast_path = WebhookFastPath(webhooks)
    app.add_middleware(HttpMetricsMiddleware)
    # The shipment routes read and check their raw bodies themselves (larger limit, dead letters).
    app.add_middleware(EdgeGuard, max_body_bytes=settings.max_body_bytes, raw_body_prefixes=("/v1/",))
    install_error_handlers(app, "ingest")

    async def kafka_ready() -> None:
        await broker_reachable(settings)

    async def producer_ready() -> None:
        if not publisher.connected:
            raise RuntimeError("producer not connected yet")

    app.include_router(
        operations_router({"kafka": kafka_ready, "producer": producer_ready, "credentials": credentials.ready})
    )
    app.include_router(webhooks.router)
    app.include_router(shipments.router, dependencies=[Depends(credentials.gate.require(KeyScope.SHIPMENTS_WRITE))])
    app.include_router(amazon_router(settings, publisher, credentials.gate))

    def openapi() -> dict[str, Any]:
        # The raw-body endpoints reference body schemas that FastAPI does not know about.
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(OPENAPI_COMPONENTS)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
