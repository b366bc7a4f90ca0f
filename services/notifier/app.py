"""Wires the notifier: HTTP API, the score consumer, the tick and the outbox worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier import db, metrics
from services.notifier.alerts import Clock, Timings
from services.notifier.amazon_status import AMAZON_GROUP_SUFFIX, AmazonStatusProcessor
from services.notifier.api import subscription_router
from services.notifier.audit import audit_router, credential_recorder
from services.notifier.delivery import (
    EmailSender,
    FileEmailSender,
    FileSlackSender,
    SlackSender,
    SmtpConfig,
    SmtpEmailSender,
    WebhookSlackSender,
)
from services.notifier.outbox import OutboxWorker, RetryPolicy
from services.notifier.processing import AlertProcessor
from services.notifier.scorer_client import ScorerClient
from services.notifier.settings import NotifierSettings
from shared.console_links import ConsoleLinks
from shared.consumer.consumer import TransactionalConsumer
from shared.credentials.access import Credentials
from shared.db import check_schema, create_engine, ping, report_schema
from shared.guard import EdgeGuard, install_error_handlers
from shared.http import operations_router
from shared.kafka import broker_reachable, ensure_topics
from shared.observability import HttpMetricsMiddleware
from shared.topics import AMAZON_VTR, AMAZON_VTR_TOPIC, TopicSpec

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def utc_now() -> datetime:
    return datetime.now(UTC)


def timings_from(settings: NotifierSettings) -> Timings:
    return Timings.from_seconds(
        settings.debounce_seconds,
        settings.deescalation_hold_seconds,
        settings.reminder_interval_seconds,
        per_category_reminders=settings.reminder_mode == "per_category",
    )


def senders_from(settings: NotifierSettings) -> tuple[EmailSender, SlackSender]:
    smtp_url = settings.smtp_url.get_secret_value()
    if not smtp_url:
        directory = settings.outbox_dir
        return FileEmailSender(directory, settings.mail_from), FileSlackSender(directory)
    return (
        SmtpEmailSender(SmtpConfig.from_url(smtp_url), settings.mail_from, settings.smtp_timeout_seconds),
        WebhookSlackSender(
            settings.slack_timeout_seconds, allow_private_addresses=settings.slack_allow_private_addresses
        ),
    )


@dataclass
class Runtime:
    """The background parts, kept on ``app.state.runtime`` for readiness checks and tests."""

    processor: AlertProcessor
    worker: OutboxWorker
    consumer: TransactionalConsumer
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def _tick_forever(processor: AlertProcessor, engine: AsyncEngine, period: float) -> None:
    while True:
        try:
            await processor.tick(engine)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("alert tick failed; retrying")
        await asyncio.sleep(period)


def create_app(settings: NotifierSettings, clock: Clock = utc_now) -> FastAPI:
    # slack_sdk logs request URLs at DEBUG, and webhook URLs are secrets.
    logging.getLogger("slack_sdk").setLevel(max(logging.INFO, logging.getLogger().level))
    engine = create_engine(settings.database_url)
    scorer = ScorerClient(
        settings.scorer_url, settings.scorer_api_key.get_secret_value(), settings.scorer_timeout_seconds
    )
    email_sender, slack_sender = senders_from(settings)
    processor = AlertProcessor(timings_from(settings), clock, settings.digest_check_seconds)
    console_links = ConsoleLinks(
        base=settings.console_base,
        secret=settings.console_secret.get_secret_value().encode(),
        valid_for=timedelta(days=settings.console_link_days),
    )
    worker = OutboxWorker(
        engine=engine,
        email_sender=email_sender,
        slack_sender=slack_sender,
        package_source=scorer,
        policy=RetryPolicy(
            settings.retry_base_seconds,
            settings.retry_max_seconds,
            settings.give_up_after_seconds,
            settings.claim_seconds,
        ),
        clock=clock,
        package_limit=settings.package_list_limit,
        scorer_wait_seconds=settings.scorer_wait_seconds,
        batch_size=settings.outbox_batch_size,
        console_links=console_links,
    )
    consumer = TransactionalConsumer(
        settings=settings,
        engine=engine,
        topics=[settings.scores_topic],
        group_id=settings.consumer_group,
        offsets=db.consumer_offsets,
        apply_batch=processor.apply_batch,
        lag_gauge=metrics.CONSUMER_LAG,
    )
    amazon_consumer = TransactionalConsumer(
        settings=settings,
        engine=engine,
        topics=[AMAZON_VTR],
        group_id=settings.consumer_group + AMAZON_GROUP_SUFFIX,
        offsets=db.consumer_offsets,
        apply_batch=AmazonStatusProcessor(clock, console_links).apply_batch,
    )
    runtime = Runtime(processor=processor, worker=worker, consumer=consumer)
    credentials = Credentials.from_settings(settings, on_record=credential_recorder(engine))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await report_schema(engine, MIGRATIONS_DIR, "notifier")
        await ensure_topics(settings, [TopicSpec(settings.scores_topic), AMAZON_VTR_TOPIC])
        await consumer.start()
        await credentials.start()
        await amazon_consumer.start()
        runtime.tasks = [
            asyncio.create_task(_tick_forever(processor, engine, settings.tick_seconds), name="notifier-tick"),
            asyncio.create_task(worker.run_forever(settings.outbox_poll_seconds), name="notifier-outbox"),
        ]
        try:
            yield
        finally:
            for task in runtime.tasks:
                task.cancel()
            for task in runtime.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await credentials.stop()
            await amazon_consumer.stop()
            await consumer.stop()
            await scorer.close()
            await slack_sender.close()
            await engine.dispose()

    async def consumer_running() -> None:
        if not consumer.running:
            raise RuntimeError("score consumer is not running")

    app = FastAPI(title="vtrwatch notifier", version="1", lifespan=lifespan)
    app.add_middleware(HttpMetricsMiddleware)
    app.add_middleware(EdgeGuard)
    install_error_handlers(app, "notifier")
    app.include_router(
        operations_router(
            {
                "database": lambda: ping(engine),
                "schema": lambda: check_schema(engine, MIGRATIONS_DIR, "notifier"),
                "kafka": lambda: broker_reachable(settings),
                "consumer": consumer_running,
                "credentials": credentials.ready,
            }
        )
    )
    app.include_router(subscription_router(settings, engine, clock, credentials.gate))
    app.include_router(audit_router(engine, credentials.gate))
    app.state.credentials = credentials
    app.state.engine = engine
    app.state.runtime = runtime
    return app
