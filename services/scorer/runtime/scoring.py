"""The scorer's reads: a seller's scores (counters, forecast, level, silent carriers), its
shipments list and the views of packages. Used by the API, the console and the publisher."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date
from fractions import Fraction

from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.domain.evaluator import Evaluator
from services.scorer.domain.freshness import LaneId, coverage
from services.scorer.domain.packages import PackageRow
from services.scorer.domain.policy import summarise_scans
from services.scorer.domain.scores import CategoryScore, ScopeCounts, ScoreRules
from services.scorer.domain.views import NO_LAST_MILE, encode_cursor, full_tracking_threshold, package_view
from services.scorer.domain.window import TodayFunction, counted_range, window
from services.scorer.settings import ScorerSettings
from services.scorer.storage.counts import read_counts, recompute_counts, silent_lane_counts
from services.scorer.storage.lastmile import load_last_miles
from services.scorer.storage.model_inputs import pending_lanes
from services.scorer.storage.packages import load_scans
from services.scorer.storage.shipments import shipment_rows
from shared.schemas import CarrierHealthNote, ModelNote, PackagePage, PackageView


class Scoring:
    def __init__(self, settings: ScorerSettings, evaluator: Evaluator, today: TodayFunction) -> None:
        self.settings = settings
        self.evaluator = evaluator
        self.today = today
        self.freshness = settings.freshness_rules()
        self.rules = ScoreRules(
            lag_days=settings.window_lag_days,
            floor=Fraction(str(settings.vtr_floor)),
            correlation=settings.forecast_correlation,
            thresholds=settings.level_thresholds(),
        )

    async def scores(
        self, connection: AsyncConnection, seller_id: str, as_of: date, scope: tuple[str, str] | None = None
    ) -> list[CategoryScore]:
        """Every category of a seller with a package in the window or entering it within 14 days
        (only the ``(marketplace, category)`` of ``scope`` when given)."""
        lag = self.settings.window_lag_days
        span = counted_range(as_of, lag)
        current = window(as_of, lag)
        if as_of >= self.today():
            found = await read_counts(connection, seller_id, span.first, span.last, current.first, current.last, scope)
        else:
            found = await recompute_counts(
                connection,
                self.evaluator,
                seller_id,
                as_of,
                span.first,
                span.last,
                current.first,
                current.last,
                scope,
            )
        await self._attach_carrier_health(connection, seller_id, as_of, found)
        lanes = await pending_lanes(connection, seller_id, as_of) if found else {}
        notes = self._model_notes(lanes, found)
        correlations = self.evaluator.model.state.correlations
        return [
            self.rules.category_score(
                marketplace,
                category,
                counts,
                as_of,
                notes.get((marketplace, category)),
                # Its pending packages' lanes' learnt correlation (the setting is the prior).
                correlations.of_category(seller_id, lanes.get((marketplace, category), ()), self.rules.correlation),
            )
            for (marketplace, category), counts in sorted(found.items())
        ]

    def _model_notes(
        self, lanes: dict[tuple[str, str], list[tuple[LaneId, int]]], found: dict[tuple[str, str], ScopeCounts]
    ) -> dict[tuple[str, str], ModelNote]:
        """Per category: the model that priced its pending packages and whether it had
        learnt every lane they are on (``lanes``: one query per seller)."""
        build = self.evaluator.build
        notes = {}
        for scope in found:
            seen = coverage(build, lanes.get(scope, ()), self.freshness)
            notes[scope] = ModelNote(
                built_at=build.built_at.replace(tzinfo=UTC) if build.built_at is not None else None,
                packages=build.packages,
                lanes_learnt=seen.learnt,
                unlearnt_pending=seen.unlearnt_pending,
            )
        return notes

    async def _attach_carrier_health(
        self, connection: AsyncConnection, seller_id: str, as_of: date, found: dict[tuple[str, str], ScopeCounts]
    ) -> None:
        """Name the silent carriers behind a category's pending packages (one query, and only
        while some carrier is silent)."""
        model = self.evaluator.model
        silent = {key: health for key, health in model.state.health.items() if health.silent(model.settings)}
        if not silent:
            return
        notes: dict[tuple[str, str], list[CarrierHealthNote]] = defaultdict(list)
        for marketplace, category, carrier, origin, count in await silent_lane_counts(connection, seller_id, as_of):
            health = silent.get((carrier, origin))
            if health is None:
                continue
            notes[(marketplace, category)].append(
                CarrierHealthNote(
                    carrier=carrier,
                    origin=origin,
                    silent_hours=round(health.silent_hours, 1),
                    received_scans=0,
                    expected_scans=round(health.expected_scans, 1),
                    affected_packages=count,
                )
            )
        for scope, scope_notes in notes.items():
            if scope in found:
                found[scope].carrier_health = tuple(sorted(scope_notes, key=lambda note: note.carrier))

    async def shipments(
        self,
        connection: AsyncConnection,
        seller_id: str,
        *,
        marketplace: str | None,
        category: str | None,
        state: str | None,
        limit: int,
        after_id: int,
    ) -> PackagePage:
        today = self.today()
        rows = await shipment_rows(
            connection,
            seller_id,
            today=today,
            window_first=window(today, self.settings.window_lag_days).first,
            at_risk_probability=self.settings.at_risk_probability,
            marketplace=marketplace,
            category=category,
            state=state,
            limit=limit,
            after_id=after_id,
        )
        page, more = rows[:limit], len(rows) > limit
        return PackagePage(
            seller_id=seller_id,
            packages=tuple(await self.views(connection, page, today)),
            next_cursor=encode_cursor(page[-1].id) if more and page and page[-1].id is not None else None,
        )

    async def views(self, connection: AsyncConnection, rows: Sequence[PackageRow], today: date) -> list[PackageView]:
        """What the API and the console show of these packages: their scans summed up and
        the last-mile carrier when a source named one."""
        tracking_numbers = {row.tracking_number for row in rows}
        found_scans = await load_scans(connection, tracking_numbers)
        last_miles = await load_last_miles(connection, tracking_numbers)
        policy = self.evaluator.policy
        return [
            package_view(
                row,
                summarise_scans(found_scans.get(row.tracking_number, ())),
                today,
                full_tracking_threshold(policy, row.marketplace),
                last_miles.get(row.tracking_number, NO_LAST_MILE),
            )
            for row in rows
        ]
