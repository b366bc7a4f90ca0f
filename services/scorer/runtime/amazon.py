"""Keeping Amazon's VTR (issue 22): a small consumer of ``vtr.amazon-vtr.v1`` in its own
group ``vtr-scorer-amazon``, outside the package pipeline (an upsert where the newest
``fetched_at`` wins, so a re-read record changes nothing; offsets committed after the
figures are stored), and the difference gauges refreshed every gauges interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.errors import KafkaError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer import metrics
from services.scorer.storage.amazon import keep, refresh_difference_gauges
from shared.kafka import make_consumer
from shared.schemas import AMAZON_CODEC, AmazonVtr, ContractError
from shared.settings import ServiceSettings
from shared.topics import AMAZON_VTR

log = logging.getLogger(__name__)

#: Appended to the scorer's consumer group for its Amazon-VTR consumer
#: (``vtr-scorer-amazon`` by default), as the notifier does for its own.
AMAZON_GROUP_SUFFIX = "-amazon"


async def refresh_difference_gauges_every(engine: AsyncEngine, interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await refresh_difference_gauges(engine)
        except Exception:  # a gauge is refreshed next round; the API does not depend on it
            log.exception("Amazon VTR gauges not refreshed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def consume_amazon_vtr(
    settings: ServiceSettings, engine: AsyncEngine, stop: asyncio.Event, group_id: str
) -> None:
    """Keep every figure of ``vtr.amazon-vtr.v1``; commit offsets after they are stored."""
    while not stop.is_set():
        consumer = make_consumer(settings, AMAZON_VTR, group_id=group_id)
        try:
            await consumer.start()
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=1000)
                figures = []
                for records in batches.values():
                    for record in records:
                        try:
                            message = AMAZON_CODEC.decode(record.value or b"")
                        except ContractError as error:
                            metrics.RECORDS.labels(AMAZON_VTR, "invalid").inc()
                            log.warning("Amazon VTR record skipped", extra={"problem": str(error)[:300]})
                            continue
                        if isinstance(message, AmazonVtr):  # connection notices are the notifier's
                            figures.append(message)
                if figures:
                    async with engine.begin() as connection:
                        await keep(connection, figures)
                    metrics.RECORDS.labels(AMAZON_VTR, "applied").inc(len(figures))
                if batches:
                    await consumer.commit()
        except asyncio.CancelledError:
            raise
        except (KafkaError, SQLAlchemyError, OSError) as error:
            # Offsets are committed after the figures are stored: a restart reads them again.
            log.warning("Amazon VTR consumer restarts", extra={"problem": type(error).__name__})
            await asyncio.sleep(2)
        finally:
            await consumer.stop()
