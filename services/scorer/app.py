"""Wiring: the FastAPI app, and a lifespan that starts the consumer, clock job and publisher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from services.scorer.api import vtr_router
from services.scorer.service import ScorerService
from services.scorer.settings import ScorerSettings
from services.scorer.store import TodayFunction, utc_today
from shared.db import check_schema, create_engine, ping, report_schema
from shared.guard import EdgeGuard, install_error_handlers
from shared.http import operations_router
from shared.kafka import broker_reachable
from shared.observability import HttpMetricsMiddleware

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def create_app(settings: ScorerSettings, today: TodayFunction = utc_today, background: bool = True) -> FastAPI:
    """``background=False`` serves the API only (no consumer, clock or publisher)."""
    engine = create_engine(settings.database_url)
    service = ScorerService(settings, engine, today=today)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await report_schema(engine, MIGRATIONS_DIR, "scorer")
        if background:
            await service.start()
        try:
            yield
        finally:
            if background:
                await service.stop()
            await engine.dispose()

    async def consumer_running() -> None:
        if background and (service.consumer is None or not service.consumer.running):
            raise RuntimeError("consumer not running")

    app = FastAPI(title="vtrwatch scorer", version="1", lifespan=lifespan)
    app.state.service = service
    app.add_middleware(HttpMetricsMiddleware)
    app.add_middleware(EdgeGuard)
    install_error_handlers(app, "scorer")
    app.include_router(
        operations_router(
            {
                "database": lambda: ping(engine),
                "schema": lambda: check_schema(engine, MIGRATIONS_DIR, "scorer"),
                "kafka": lambda: broker_reachable(settings),
                "consumer": consumer_running,
            }
        )
    )
    app.include_router(vtr_router(service))
    return app
