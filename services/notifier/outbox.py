"""The outbox worker: composes and delivers the notifications the state machine decided.

A row is claimed (a lease, so two workers never send the same row at once and a crashed
worker's rows come back), composed once (the rendering is stored, so every retry sends
the same words), handed to SMTP or Slack, then marked sent. Failures are retried with
exponential backoff and full jitter, never sooner than a Slack ``Retry-After``; permanent
ones (refused address, removed webhook) and rows older than the give-up age are marked
failed. A crash between "sent" and "marked" may send twice; nothing else can.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier import db, metrics
from services.notifier.alerts import Clock, NoticeKind
from services.notifier.db import as_utc, delivery_attempts, outbox
from services.notifier.delivery import DeliveryError, EmailSender, SlackSender
from services.notifier.messages import (
    AlertMessage,
    DigestEntry,
    DigestMessage,
    EmailContent,
    compose_digest_email,
    compose_digest_slack,
    compose_email,
    compose_slack,
)
from services.notifier.processing import CHANNEL_EMAIL, CHANNEL_SLACK
from services.notifier.scorer_client import PackageSource, PackagesUnavailable
from shared.console_links import ConsoleLinks
from shared.db import is_transient
from shared.schemas import SCORE_CODEC, Level, PackageView
from shared.wording import Language

log = logging.getLogger(__name__)

#: Attempts after which a row that keeps failing for an unforeseen reason is parked (failed).
UNEXPECTED_ATTEMPTS = 5


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float
    max_seconds: float
    give_up_after_seconds: float
    claim_seconds: float

    def backoff(self, attempts: int, rng: Callable[[], float]) -> float:
        """Full jitter: uniformly up to base x 2^(attempts-1), capped."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        return float(max(self.base_seconds / 10, ceiling * rng()))


def render_digest(row: Any, console_url: str | None = None) -> dict[str, Any]:
    entries = [
        DigestEntry(Level(entry["level"]), SCORE_CODEC.decode(orjson.dumps(entry["snapshot"])))
        for entry in orjson.loads(row.snapshot)
    ]
    message = DigestMessage(
        seller_id=row.seller_id, entries=entries, language=Language(row.language), console_url=console_url
    )
    if row.channel == CHANNEL_EMAIL:
        content = compose_digest_email(message)
        return {"subject": content.subject, "text": content.text, "html": content.html}
    return compose_digest_slack(message)


class OutboxWorker:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        email_sender: EmailSender,
        slack_sender: SlackSender,
        package_source: PackageSource,
        policy: RetryPolicy,
        clock: Clock,
        package_limit: int = 20,
        scorer_wait_seconds: float = 120.0,
        batch_size: int = 50,
        rng: Callable[[], float] = random.random,
        console_links: ConsoleLinks | None = None,
    ) -> None:
        self._engine = engine
        self._senders = {CHANNEL_EMAIL: email_sender, CHANNEL_SLACK: slack_sender}
        self._packages = package_source
        self._policy = policy
        self._clock = clock
        self._package_limit = package_limit
        self._scorer_wait = timedelta(seconds=scorer_wait_seconds)
        self._batch_size = batch_size
        self._rng = rng
        self._console_links = console_links

    async def run_forever(self, poll_seconds: float) -> None:
        while True:
            try:
                handled = await self.run_once()
                await self.export_backlog()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox pass failed; retrying")
                handled = 0
            if handled == 0:
                await asyncio.sleep(poll_seconds)

    async def run_once(self) -> int:
        """Deliver what is due now; returns the number of rows handled."""
        now = self._clock()
        async with self._engine.connect() as connection:
            candidates = (
                await connection.execute(
                    select(outbox.c.id)
                    .where(
                        and_(
                            outbox.c.status == db.OUTBOX_PENDING,
                            outbox.c.next_attempt_at <= now,
                            or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
                        )
                    )
                    .order_by(outbox.c.next_attempt_at, outbox.c.id)
                    .limit(self._batch_size)
                )
            ).all()
        handled = 0
        packages_cache: dict[tuple[str, str, str], Sequence[PackageView] | None] = {}
        for (row_id,) in candidates:
            row = await self._claim(row_id, now)
            if row is None:
                continue
            handled += 1
            try:
                await self._deliver(row, packages_cache)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if is_transient(error):
                    # The database itself (down, read-only, full): not this row's fault. The
                    # claim expires and the row is tried again; nothing is counted against it.
                    raise
                await self._unexpected_failure(row, error)
        return handled

    async def _unexpected_failure(self, row: Any, error: Exception) -> None:
        """A row whose composing or sending raised something no sender foresaw: retried
        with backoff like any failure, and parked (marked failed, counted, logged) after
        UNEXPECTED_ATTEMPTS, so one bad row never holds up the rows behind it."""
        # The stack without the message: an exception's text may quote a webhook URL (a secret).
        log.error(
            "notification could not be delivered",
            extra={
                "outbox_id": row.id,
                "channel": row.channel,
                "error": type(error).__name__,
                "stack": "".join(traceback.format_tb(error.__traceback__)),
            },
        )
        reason = f"unexpected {type(error).__name__}"
        if row.attempts + 1 >= UNEXPECTED_ATTEMPTS:
            await self._record(row, "failed", f"parked after {row.attempts + 1} attempts: {reason}", 0.0, None)
            metrics.PARKED.labels(row.channel).inc()
        else:
            await self._record(row, "retry", reason, 0.0, retry_after=None)

    async def _claim(self, row_id: int, now: datetime) -> Any:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(outbox)
                .where(
                    and_(
                        outbox.c.id == row_id,
                        outbox.c.status == db.OUTBOX_PENDING,
                        or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
                    )
                )
                .values(claimed_until=now + timedelta(seconds=self._policy.claim_seconds))
            )
            if result.rowcount != 1:
                return None
            return (await connection.execute(select(outbox).where(outbox.c.id == row_id))).one()

    async def _compose(
        self, row: Any, cache: dict[tuple[str, str, str], Sequence[PackageView] | None]
    ) -> tuple[dict[str, Any], bool] | None:
        """The message to send and whether it lists the packages; None: wait for the scorer."""
        if row.rendered is not None:
            return orjson.loads(row.rendered), bool(row.packages_listed)
        if row.kind == NoticeKind.DIGEST.value:
            overview = self._console_links.link(row.seller_id, self._clock()) if self._console_links else None
            return await self._store_rendering(row, render_digest(row, overview), packages_listed=None), False
        key = (row.seller_id, row.marketplace, row.category)
        if key not in cache:
            try:
                cache[key] = await self._packages.packages_to_fix(*key, limit=self._package_limit)
            except PackagesUnavailable as error:
                log.warning("package list unavailable", extra={"error": str(error)})
                cache[key] = None
        packages = cache[key]
        if packages is None and self._clock() - as_utc(row.created_at) < self._scorer_wait:
            return None
        message = AlertMessage(
            kind=NoticeKind(row.kind),
            previous_level=Level(row.previous_level),
            level=Level(row.level),
            snapshot=SCORE_CODEC.decode(row.snapshot.encode()),
            packages=packages,
            language=Language(row.language),
            console_url=self._console_links.link(
                row.seller_id, self._clock(), marketplace=row.marketplace, category=row.category
            )
            if self._console_links
            else None,
        )
        rendered: dict[str, Any]
        if row.channel == CHANNEL_EMAIL:
            content = compose_email(message)
            rendered = {"subject": content.subject, "text": content.text, "html": content.html}
        else:
            rendered = compose_slack(message)
        listed = packages is not None
        return await self._store_rendering(row, rendered, packages_listed=listed), listed

    async def _store_rendering(
        self, row: Any, rendered: dict[str, Any], packages_listed: bool | None
    ) -> dict[str, Any]:
        async with self._engine.begin() as connection:
            await connection.execute(
                update(outbox)
                .where(outbox.c.id == row.id)
                .values(rendered=orjson.dumps(rendered).decode(), packages_listed=packages_listed)
            )
        return rendered

    async def _deliver(self, row: Any, cache: dict[tuple[str, str, str], Sequence[PackageView] | None]) -> None:
        composed = await self._compose(row, cache)
        if composed is None:
            await self._record(
                row, "retry", "waiting for the scorer's package list", 0.0, retry_after=None, waiting_for_scorer=True
            )
            return
        rendered, _ = composed
        started = time.perf_counter()
        try:
            if row.channel == CHANNEL_EMAIL:
                email_sender: EmailSender = self._senders[CHANNEL_EMAIL]  # type: ignore[assignment]
                await email_sender.send(row.recipient, EmailContent(**rendered), row.dedupe_key)
            else:
                slack_sender: SlackSender = self._senders[CHANNEL_SLACK]  # type: ignore[assignment]
                await slack_sender.send(row.recipient, rendered, row.dedupe_key)
        except DeliveryError as error:
            duration = time.perf_counter() - started
            metrics.SEND_DURATION.labels(row.channel).observe(duration)
            outcome = "failed" if error.permanent else "retry"
            await self._record(row, outcome, error.reason, duration, retry_after=error.retry_after)
            return
        duration = time.perf_counter() - started
        metrics.SEND_DURATION.labels(row.channel).observe(duration)
        await self._record(row, "sent", None, duration, retry_after=None)

    async def _record(
        self,
        row: Any,
        outcome: str,
        error: str | None,
        duration: float,
        retry_after: float | None,
        waiting_for_scorer: bool = False,
    ) -> None:
        now = self._clock()
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "claimed_until": None, "last_error": error}
        if outcome == "sent":
            values.update(status=db.OUTBOX_SENT, sent_at=now)
        elif outcome == "retry" and now - as_utc(row.created_at) >= timedelta(
            seconds=self._policy.give_up_after_seconds
        ):
            outcome = "failed"
            values.update(status=db.OUTBOX_FAILED, last_error=f"gave up after {attempts} attempts: {error}")
        elif outcome == "retry":
            delay = self._policy.backoff(attempts, self._rng)
            if retry_after is not None:
                delay = max(delay, retry_after)
            values.update(next_attempt_at=now + timedelta(seconds=delay))
        else:
            values.update(status=db.OUTBOX_FAILED)
        async with self._engine.begin() as connection:
            await connection.execute(update(outbox).where(outbox.c.id == row.id).values(values))
            await connection.execute(
                insert(delivery_attempts).values(
                    outbox_id=row.id, attempted_at=now, outcome=outcome, error=error, duration_seconds=duration
                )
            )
        if not waiting_for_scorer:
            metrics.NOTIFICATIONS.labels(row.channel, row.level, outcome).inc()
        if outcome == "failed":
            log.warning(
                "notification failed permanently",
                extra={"outbox_id": row.id, "channel": row.channel, "error": values["last_error"]},
            )

    async def export_backlog(self) -> None:
        now = self._clock()
        async with self._engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(outbox.c.channel, func.count(), func.min(outbox.c.created_at))
                    .where(outbox.c.status == db.OUTBOX_PENDING)
                    .group_by(outbox.c.channel)
                )
            ).all()
        seen = {row[0]: (int(row[1]), row[2]) for row in rows}
        for channel in (CHANNEL_EMAIL, CHANNEL_SLACK):
            count, oldest = seen.get(channel, (0, None))
            metrics.OUTBOX_BACKLOG.labels(channel).set(count)
            age = (now - as_utc(oldest)).total_seconds() if oldest is not None else 0.0
            metrics.OUTBOX_OLDEST_AGE.labels(channel).set(max(0.0, age))
