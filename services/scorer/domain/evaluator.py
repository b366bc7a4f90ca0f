"""The evaluator: the policy and the forecast model applied to packages, and the counter
deltas that evaluated packages make. Pure: no database."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from services.scorer.domain.freshness import ModelBuild
from services.scorer.domain.packages import MICRO, NOON, Cancellation, PackageRow, counted_deadline
from services.scorer.domain.policy import (
    Policy,
    Scan,
    ShipmentFacts,
    decide,
    required_tracking,
    summarise_scans,
    tracking_number_malformed,
)
from services.scorer.model import (
    Model,
    ModelState,
)
from shared.schemas import (
    PackageState,
    Reason,
    TrackingLevel,
)

CountKey = tuple[str, str, str, date]


ReasonKey = tuple[str, str, str, date, str, str]


def variance_micro(probability_micro: int) -> int:
    """p(1-p) in millionths, truncated (migration 0003 computes the same in SQL)."""
    return probability_micro * (MICRO - probability_micro) // MICRO


@dataclass
class Deltas:
    counts: dict[CountKey, list[int]]
    reasons: dict[ReasonKey, int]
    scopes: set[tuple[str, str, str]]

    @classmethod
    def empty(cls) -> Deltas:
        return cls(defaultdict(lambda: [0, 0, 0, 0, 0]), defaultdict(int), set())

    def add(self, package: PackageRow, sign: int) -> None:
        state = package.state
        if state == PackageState.CANCELLED:
            return
        count = self.counts[(*package.scope, package.promised_date)]
        if state == PackageState.VALID:
            count[0] += sign
        elif state == PackageState.INVALID:
            count[1] += sign
        else:
            count[2] += sign
            count[3] += sign * package.probability_micro
            count[4] += sign * variance_micro(package.probability_micro)
        if package.reason:
            self.reasons[(*package.scope, package.promised_date, state, package.reason)] += sign

    def change(self, before: PackageRow | None, after: PackageRow) -> None:
        if before is not None:
            self.add(before, -1)
            self.scopes.add(before.scope)
        self.add(after, +1)
        self.scopes.add(after.scope)


#: Bound on the memo of required tracking levels (distinct order values x currencies x marketplaces).
LEVEL_MEMO_SIZE = 50_000


@dataclass
class Evaluator:
    """The policy and the current forecast model, applied to packages."""

    policy: Policy
    #: Replaced by the clock job when the model is refreshed (see :func:`refresh_model`).
    model: Model = field(init=False)
    #: What that build saw (domain/freshness.py).
    build: ModelBuild = field(default_factory=ModelBuild, compare=False)
    #: required_tracking per (origin, marketplace, amount, currency): Decimal arithmetic and
    #: FX conversion per package were a large share of a batch's evaluation time.
    _levels: dict[tuple[str, str, str, str], TrackingLevel] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.model = Model(ModelState(), self.policy.forecast)

    def required_tracking(self, facts: ShipmentFacts) -> TrackingLevel:
        key = (facts.ship_from_country, facts.marketplace, facts.order_amount, facts.order_currency)
        level = self._levels.get(key)
        if level is None:
            if len(self._levels) >= LEVEL_MEMO_SIZE:
                self._levels.clear()
            level = self._levels[key] = required_tracking(self.policy, facts)
        return level

    def evaluate(
        self,
        package: PackageRow,
        package_scans: Sequence[Scan],
        package_cancellations: Sequence[Cancellation],
        today: date,
        occurred_before: datetime | None = None,
        now: datetime | None = None,
    ) -> PackageRow:
        """``package`` evaluated, as a new row (``package`` is left as it was)."""
        return self.evaluate_in_place(
            package.clone(), package_scans, package_cancellations, today, occurred_before, now
        )

    def evaluate_in_place(
        self,
        package: PackageRow,
        package_scans: Sequence[Scan],
        package_cancellations: Sequence[Cancellation],
        today: date,
        occurred_before: datetime | None = None,
        now: datetime | None = None,
    ) -> PackageRow:
        """Set ``package``'s evaluation fields and return it; for rows the caller owns (a
        copy per package per batch was a tenth of the evaluation time).

        ``now`` (naive UTC) is the moment the model conditions on; by default noon of ``today``.
        """
        moment = now if now is not None else datetime.combine(today, NOON)
        facts = package.facts()
        level = self.required_tracking(facts)
        summary = summarise_scans(package_scans, occurred_before)
        decision = decide(
            self.policy,
            facts,
            summary,
            promised_date=package.promised_date,
            today=today,
            cancelled=bool(package_cancellations) and any(c.applies_to(package) for c in package_cancellations),
            level=level,
        )
        reason = decision.reason
        probability = decision.probability
        package.review_at = None
        if decision.state is PackageState.PENDING:
            probability, reason = self.model.estimate(
                package.lane,
                full_tracking=level is TrackingLevel.FULL,
                physical_scans=summary.physical_scans,
                first_scan_at=summary.first_scan_at,
                confirmed_at=package.confirmed_at,
                deadline=counted_deadline(package.promised_date),
                now=moment,
                malformed=tracking_number_malformed(self.policy, facts),
                last_scan_at=summary.last_scan_at,
                last_scan_status=summary.last_scan_status,
            )
            if decision.reason is Reason.TRACKING_STOPPED:
                # The aggregator sends nothing more until the number is registered again.
                reason = Reason.TRACKING_STOPPED
                probability *= self.policy.forecast.tracking_stopped_factor
            package.review_at = moment + timedelta(hours=self.policy.forecast.review_hours)
        package.state = decision.state.value
        package.reason = reason.value if reason else None
        package.required_tracking = decision.required.value
        package.probability_micro = round(probability * MICRO)
        package.first_scan_at = summary.first_scan_at
        package.delivery_scan_at = summary.delivery_scan_at
        package.last_scan_at = summary.last_scan_at
        return package


@dataclass
class EvaluatedPackages:
    """Packages evaluated for writing, and the counter deltas they make."""

    writes: list[PackageRow]
    deltas: Deltas

    def add(
        self,
        evaluator: Evaluator,
        changes: Iterable[tuple[PackageRow | None, PackageRow]],
        found_scans: Mapping[str, Sequence[Scan]],
        found_cancellations: Mapping[str, Sequence[Cancellation]],
        today: date,
        now: datetime | None,
        *,
        rewrite: bool = False,
    ) -> None:
        """Evaluate ``(before, after)`` pairs (``after`` in place) and keep what changed."""
        for before, after in changes:
            evaluated = evaluator.evaluate_in_place(
                after,
                found_scans.get(after.tracking_number, ()),
                found_cancellations.get(after.tracking_number, ()),
                today,
                now=now,
            )
            if before is not None and before.content() == evaluated.content() and not rewrite:
                continue
            evaluated.version = (before.version if before is not None else 0) + 1
            self.deltas.change(before, evaluated)
            self.writes.append(evaluated)
