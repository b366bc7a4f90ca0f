"""The simulator's ground truth against domain.md: every test vector and the window edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from shared.schemas import CanonicalStatus as S
from tests.tools.conftest import TODAY, PackageFactory, ScanFactory
from tools.simulate.truth import (
    Tally,
    full_tracking_required,
    package_valid,
    tracking_is_valid,
    true_breach_day,
    vtr_by_key,
)

# domain.md section 4: (marketplace, value, integrated, statuses, ship_from, valid)
VECTORS = [
    ("US", "4.99", True, (S.ACCEPTED,), "CN", True),
    ("US", "5.00", True, (S.ACCEPTED, S.IN_TRANSIT), "CN", False),
    ("US", "5.00", True, (S.ACCEPTED, S.DELIVERED), "CN", True),
    ("SG", "6.90", True, (S.ACCEPTED,), "CN", True),
    ("SG", "7.00", True, (S.ATTEMPTED_DELIVERY,), "CN", False),
    ("AE", "25", True, (S.ACCEPTED, S.ATTEMPTED_DELIVERY), "CN", True),
    ("SA", "19", False, (S.ACCEPTED, S.DELIVERED), "CN", False),
    ("JP", "999", True, (S.INFO_RECEIVED,), "CN", False),
    ("DE", "50", True, (S.ACCEPTED,), "DE", True),
    ("MX", "200", True, (S.ACCEPTED, S.IN_TRANSIT, S.IN_TRANSIT), "CN", False),
]


@pytest.mark.parametrize(("marketplace", "value", "integrated", "statuses", "ship_from", "valid"), VECTORS)
def test_domain_vectors(
    make_scan: ScanFactory,
    marketplace: str,
    value: str,
    integrated: bool,
    statuses: tuple[S, ...],
    ship_from: str,
    valid: bool,
) -> None:
    full = full_tracking_required(marketplace, ship_from, Decimal(value))
    scans = [make_scan(status) for status in statuses]
    assert tracking_is_valid(integrated, full, True, scans) is valid


def test_unknown_codes_are_not_scans(make_scan: ScanFactory) -> None:
    assert not tracking_is_valid(True, False, True, [make_scan(S.UNKNOWN), make_scan(S.INFO_RECEIVED)])
    assert tracking_is_valid(True, False, True, [make_scan(S.UNKNOWN), make_scan(S.EXCEPTION)])


@pytest.mark.parametrize(
    ("days_before", "in_window"), [(31, False), (30, True), (15, True), (1, True), (0, False), (-3, False)]
)
def test_window_edges(one_package: PackageFactory, make_scan: ScanFactory, days_before: int, in_window: bool) -> None:
    scenario, package = one_package(
        (make_scan(S.ACCEPTED, TODAY - timedelta(days=40)),), promised=TODAY - timedelta(days=days_before)
    )
    expected = {package.key: Tally(1, 1)} if in_window else {}
    assert vtr_by_key(scenario, TODAY) == expected


def test_late_scan_counts_from_the_day_it_occurred(one_package: PackageFactory, make_scan: ScanFactory) -> None:
    late = TODAY - timedelta(days=2)
    scenario, package = one_package((make_scan(S.ACCEPTED, late, hour=23),), promised=TODAY - timedelta(days=6))
    assert not package_valid(scenario, package, late - timedelta(days=1))
    assert package_valid(scenario, package, late)
    assert vtr_by_key(scenario, TODAY)[package.key] == Tally(1, 1)


def test_known_at_hides_what_was_not_reported_yet(one_package: PackageFactory, make_scan: ScanFactory) -> None:
    scan = make_scan(S.ACCEPTED, TODAY - timedelta(days=1), hour=10)
    scenario, package = one_package((scan,))
    assert package_valid(scenario, package, TODAY, known_at=scan.occurred_at)
    assert not package_valid(scenario, package, TODAY, known_at=scan.occurred_at - timedelta(seconds=1))


def test_cancelled_orders_are_excluded_once_known(one_package: PackageFactory) -> None:
    cancelled_at = datetime(2026, 11, 10, 8, tzinfo=UTC)
    scenario, package = one_package((), cancelled_at=cancelled_at)
    assert vtr_by_key(scenario, TODAY) == {}
    assert vtr_by_key(scenario, TODAY, known_at=cancelled_at - timedelta(hours=1)) == {package.key: Tally(1, 0)}


def test_surface_service_cannot_carry_full_tracking(one_package: PackageFactory, make_scan: ScanFactory) -> None:
    scans = (make_scan(S.ACCEPTED), make_scan(S.IN_TRANSIT))
    below, package = one_package(scans, marketplace="AE", value="19.99", service_key="china-post/surface")
    assert package_valid(below, package, TODAY)
    above, package = one_package(scans, marketplace="AE", value="20.00", service_key="china-post/surface")
    assert not package_valid(above, package, TODAY)


def test_not_integrated_carrier_is_never_valid(one_package: PackageFactory, make_scan: ScanFactory) -> None:
    scenario, package = one_package(
        (make_scan(S.ACCEPTED), make_scan(S.DELIVERED)), marketplace="SA", value="19", service_key="fast-cargo/express"
    )
    assert not package_valid(scenario, package, TODAY)


def test_true_breach_day_knows_the_future(one_package: PackageFactory) -> None:
    # An order promised in 3 days that will never be scanned: the window drops to 0% on day +4.
    scenario, package = one_package((), promised=TODAY + timedelta(days=3))
    assert vtr_by_key(scenario, TODAY) == {}
    assert true_breach_day(scenario, package.key, TODAY) == TODAY + timedelta(days=4)
