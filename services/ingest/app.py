"""Wires the ingest service: settings -> publisher -> routes, with the lifespan that
creates the topics, starts the producer and, on shutdown (after uvicorn drained the
in-flight requests), flushes it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.ingest.publisher import Publisher
from services.ingest.routes import OPENAPI_COMPONENTS, WebhookFastPath, shipments_router, webhook_routes
from services.ingest.settings import IngestSettings
from shared.http import operations_router
from shared.kafka import broker_reachable
from shared.observability import HttpMetricsMiddleware

DESCRIPTION = """Carrier tracking webhooks and sellers' shipment confirmations onto Kafka.

A 2xx means the records are on Kafka (acks=all). See docs/ingest.md and docs/carriers.md."""


def create_app(settings: IngestSettings) -> FastAPI:
    publisher = Publisher(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await publisher.start()
        try:
            yield
        finally:
            await publisher.stop()

    app = FastAPI(title="vtrwatch ingest", description=DESCRIPTION, version="1", lifespan=lifespan)
    app.state.publisher = publisher
    webhooks = webhook_routes(settings, publisher)
    # Added first so that it runs inside the metrics middleware, which still sees the route.
    app.add_middleware(WebhookFastPath, webhooks=webhooks)
    app.add_middleware(HttpMetricsMiddleware)

    async def kafka_ready() -> None:
        await broker_reachable(settings)

    app.include_router(operations_router({"kafka": kafka_ready}))
    app.include_router(webhooks.router)
    app.include_router(shipments_router(settings, publisher))

    def openapi() -> dict[str, Any]:
        # The raw-body endpoints reference body schemas that FastAPI does not know about.
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(OPENAPI_COMPONENTS)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
