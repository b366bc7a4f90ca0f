"""The clock job: what time alone changes. Every round it refreshes the forecast model when
due, runs the clock steps (``storage/clock.py``: reviews of pending packages, expiry past
the promised date), rebuilds the projections after a refresh, and marks the daily window
slide (pruning counters no window reads any more)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scorer import metrics
from services.scorer.domain.evaluator import Evaluator
from services.scorer.domain.freshness import InputChange, RefreshReason, refresh_reason
from services.scorer.domain.window import FORECAST_DAYS, TodayFunction, window
from services.scorer.settings import ScorerSettings
from services.scorer.storage.clock import expire_pending, mark_window_slide, prune_counters, review_due
from services.scorer.storage.gauges import read_gauges
from services.scorer.storage.model_inputs import read_new_lanes
from services.scorer.storage.model_state import refresh_model, refresh_projections
from services.scorer.storage.packages import ConcurrentUpdate

#: A step over pending packages: ``(connection, evaluator, today, limit, now)`` -> packages written.
ClockStep = Callable[[AsyncConnection, Evaluator, date, int, datetime], Awaitable[int]]


class ClockJob:
    def __init__(
        self,
        settings: ScorerSettings,
        engine: AsyncEngine,
        evaluator: Evaluator,
        today: TodayFunction,
        now: Callable[[], datetime],
        on_change: Callable[[], None],
        caught_up: Callable[[], bool],
        records_applied: Callable[[], int],
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.evaluator = evaluator
        self.today = today
        self.now = now
        #: Called when a round changed some scores (wakes the publisher).
        self._on_change = on_change
        #: Whether the consumer is caught up, and how many records it has applied in all.
        self._caught_up = caught_up
        self._records_applied = records_applied
        self.freshness = settings.freshness_rules()
        #: ``records_applied()`` when the model was last built.
        self._applied_at_build = 0
        #: Whether the consumer was caught up at the last round (a backlog drains between two).
        self._caught_up_at_last_round = False

    def just_caught_up(self) -> bool:
        """The consumer has caught up since the last round: the clock runs at once (and
        rebuilds the model: domain/freshness.py)."""
        return self._caught_up() and not self._caught_up_at_last_round

    async def refresh_reason(self) -> RefreshReason | None:
        """Whether the model must be rebuilt now: its timer, or its input changed enough
        since the last build (domain/freshness.py)."""
        caught_up = self._caught_up()
        just_caught_up = self.just_caught_up()
        self._caught_up_at_last_round = caught_up
        build = self.evaluator.build
        records = self._records_applied() - self._applied_at_build
        change = InputChange(records=records)
        if caught_up and records and build.built_at is not None:
            async with self.engine.connect() as connection:
                change = replace(await read_new_lanes(connection, build), records=records)
        return refresh_reason(
            build,
            change,
            self.freshness,
            now=self.now(),
            timer_due=self.model_due(),
            caught_up=caught_up,
            just_caught_up=just_caught_up,
        )

    def model_due(self) -> bool:
        """Whether the forecast model is older than ``VTR_MODEL_REFRESH_SECONDS`` (or was never built)."""
        computed = self.evaluator.model.state.computed_at
        return computed is None or (self.now() - computed).total_seconds() >= self.settings.model_refresh_seconds

    def _export_carrier_health(self) -> None:
        model = self.evaluator.model
        metrics.CARRIER_SILENT_HOURS.clear()
        metrics.CARRIER_SCAN_RATE.clear()
        for health in model.state.health.values():
            metrics.CARRIER_SILENT_HOURS.labels(health.carrier, health.origin).set(round(health.silent_hours, 2))
            metrics.CARRIER_SCAN_RATE.labels(health.carrier, health.origin).set(round(health.usual_rate, 4))
            metrics.CARRIER_SILENT.labels(health.carrier, health.origin).set(int(health.silent(model.settings)))

    async def run_once(self, refresh: bool | None = None) -> tuple[int, bool]:
        """Refresh the model when due or when its input changed enough (``refresh`` forces
        it either way), recompute pending packages whose review is due, expire pending
        packages whose promised date passed, rebuild the projections with those fresh
        probabilities, and mark the window slide once a day."""
        today = self.today()
        reason = await self.refresh_reason() if refresh is None else (RefreshReason.FORCED if refresh else None)
        refreshing = reason is not None
        if reason is not None:
            started = time.perf_counter()
            # Records applied while it is built may be in it or not: they count for the next one.
            applied = self._records_applied()
            async with self.engine.begin() as connection:
                await refresh_model(connection, self.evaluator, self.now())
            self._applied_at_build = applied
            metrics.MODEL_REFRESH_SECONDS.observe(time.perf_counter() - started)
            metrics.MODEL_REFRESHES.labels(reason.value).inc()
            metrics.MODEL_PACKAGES.set(self.evaluator.build.packages)
            self._export_carrier_health()
        reviewed = await self._run_step(review_due, today)
        expired = await self._run_step(expire_pending, today)
        # Counted as soon as committed (a reader that sees the package expired sees the count).
        metrics.REVIEWED_PACKAGES.inc(reviewed)
        metrics.EXPIRED_PACKAGES.inc(expired)
        if refreshing:
            async with self.engine.begin() as connection:
                await refresh_projections(connection, self.evaluator.policy.forecast, today, self.now())
        async with self.engine.begin() as connection:
            slid = await mark_window_slide(connection, today, self.settings.window_lag_days, FORECAST_DAYS)
            if slid:
                oldest_needed = window(today, self.settings.window_lag_days).first
                await prune_counters(connection, oldest_needed - timedelta(days=self.settings.counters_retention_days))
        metrics.CLOCK_RUNS.labels("ok").inc()
        if expired or reviewed or slid:
            self._on_change()
        return expired, slid

    async def _run_step(self, step: ClockStep, today: date) -> int:
        """Run ``step`` in batches of its own transaction until it has nothing left."""
        total = 0
        while True:
            try:
                async with self.engine.begin() as connection:
                    written = await step(connection, self.evaluator, today, self.settings.clock_batch_size, self.now())
            except ConcurrentUpdate:  # the consumer changed one of the rows; the next run retries
                metrics.CLOCK_RUNS.labels("conflict").inc()
                return total
            total += written
            if written < self.settings.clock_batch_size:
                return total

    async def refresh_gauges(self) -> None:
        """Whole-table aggregates for the dashboards; run rarely (they scan the counters)."""
        today = self.today()
        current = window(today, self.settings.window_lag_days)
        async with self.engine.connect() as connection:
            readings = await read_gauges(connection, current.first, current.last, today + timedelta(days=FORECAST_DAYS))
        metrics.PACKAGES.labels("valid").set(readings.valid)
        # Pending packages in the window have passed their promised date: they count as invalid.
        metrics.PACKAGES.labels("invalid").set(readings.invalid + readings.pending)
        metrics.PACKAGES_BY_REASON.clear()
        for state, reason, count in readings.reasons:
            if count:
                metrics.PACKAGES_BY_REASON.labels(state, reason).set(count)
        metrics.SELLER_CATEGORIES.clear()
        for level, marketplace, count in readings.levels:
            metrics.SELLER_CATEGORIES.labels(level, marketplace).set(count)
        metrics.OUTBOX_BACKLOG.set(readings.outbox_backlog)
