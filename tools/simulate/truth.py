"""Ground truth: the VTR every seller x marketplace x category should have, computed from
the simulator's own reading of ``domain.md`` (sections 2 and 3).

Deliberately a second, small implementation that shares nothing with the scorer's policy:
if both are wrong the same way, the check could not catch it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from shared.schemas import CanonicalStatus
from tools.simulate.catalog import MARKETPLACES
from tools.simulate.scenario import Package, Scan, Scenario

FLOOR = 0.95
WINDOW_DAYS = 30

_NOT_PHYSICAL = {CanonicalStatus.INFO_RECEIVED, CanonicalStatus.UNKNOWN}
_DELIVERY = {CanonicalStatus.DELIVERED, CanonicalStatus.ATTEMPTED_DELIVERY}


def end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(), UTC)


def full_tracking_required(marketplace: str, ship_from: str, value: Decimal) -> bool:
    """CN origin at or above the marketplace threshold needs full tracking (domain.md 2.3)."""
    return ship_from == "CN" and value >= MARKETPLACES[marketplace].threshold


def tracking_is_valid(
    integrated: bool, full_required: bool, delivery_scans_possible: bool, scans: Iterable[Scan]
) -> bool:
    """The three conditions of domain.md section 2, over the scans counted so far."""
    if not integrated:
        return False
    physical = [scan for scan in scans if scan.status not in _NOT_PHYSICAL]
    if not full_required:
        return len(physical) >= 1
    return len(physical) >= 2 and any(scan.status in _DELIVERY for scan in physical)


def package_valid(scenario: Scenario, package: Package, as_of: date, known_at: datetime | None = None) -> bool:
    """Valid on ``as_of``: scans before the end of that day, of those known at ``known_at``."""
    cutoff = end_of(as_of) if known_at is None else min(end_of(as_of), known_at + timedelta(microseconds=1))
    parcel = scenario.parcels[package.tracking_number]
    service = package.service
    return tracking_is_valid(
        service.integrated,
        full_tracking_required(package.marketplace, package.ship_from, package.value),
        service.delivery_scans,
        (scan for scan in parcel.scans if scan.occurred_at < cutoff),
    )


@dataclass(frozen=True)
class Tally:
    total: int = 0
    valid: int = 0

    @property
    def vtr(self) -> float | None:
        return self.valid / self.total if self.total else None

    def add(self, valid: bool) -> Tally:
        return Tally(self.total + 1, self.valid + int(valid))


def in_window(package: Package, as_of: date) -> bool:
    return as_of - timedelta(days=WINDOW_DAYS) <= package.promised_date <= as_of - timedelta(days=1)


def known(package: Package, known_at: datetime | None) -> bool:
    return known_at is None or package.confirmed_at <= known_at


def cancelled(package: Package, known_at: datetime | None) -> bool:
    if package.cancelled_at is None:
        return False
    return known_at is None or package.cancelled_at <= known_at


def vtr_by_key(scenario: Scenario, as_of: date, known_at: datetime | None = None) -> dict[tuple[str, str, str], Tally]:
    """Window tallies per (seller, marketplace, category) on ``as_of``.

    ``known_at`` limits the truth to what had been reported by then (shipments, scans and
    cancellations); None means everything the simulator knows, the future included.
    """
    tallies: dict[tuple[str, str, str], Tally] = defaultdict(Tally)
    for package in scenario.packages:
        if not known(package, known_at) or cancelled(package, known_at) or not in_window(package, as_of):
            continue
        tallies[package.key] = tallies[package.key].add(package_valid(scenario, package, as_of, known_at))
    return dict(tallies)


def true_breach_day(scenario: Scenario, key: tuple[str, str, str], start: date, days: int = 14) -> date | None:
    """The first day from ``start`` on whose true VTR (knowing the future) is below 95%."""
    for offset in range(days + 1):
        day = start + timedelta(days=offset)
        vtr = vtr_by_key(scenario, day).get(key, Tally()).vtr
        if vtr is not None and vtr < FLOOR:
            return day
    return None


def true_series(scenario: Scenario, key: tuple[str, str, str], days: Iterable[date]) -> list[float | None]:
    return [vtr_by_key(scenario, day).get(key, Tally()).vtr for day in days]
