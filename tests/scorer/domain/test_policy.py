"""The validity rules of domain.md section 2, every test vector of section 4, and the
scan-counting rules (duplicates, out of order, the same scan from two sources)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scorer.domain.policy import (
    Policy,
    Scan,
    ShipmentFacts,
    decide,
    policy_from_mapping,
    required_tracking,
    s10_valid,
    summarise_scans,
)
from shared.schemas import CanonicalStatus, PackageState, Reason, TrackingLevel
from tests.scorer.conftest import FUTURE, T0, TODAY, facts

PAST = TODAY - timedelta(days=1)

S = CanonicalStatus


def scans(*statuses: CanonicalStatus) -> list[Scan]:
    return [Scan(status, T0 + timedelta(hours=i)) for i, status in enumerate(statuses)]


# domain.md section 4: (#, facts, scans, valid?, required level, reason once the promised date passed)
VECTORS = [
    (1, facts("US", "4.99", "USD", "china-post", "ePacket"), scans(S.ACCEPTED), True, TrackingLevel.PARTIAL, None),
    (2, facts("US", "5.00", "USD", "china-post", "ePacket"), scans(S.ACCEPTED, S.IN_TRANSIT), False,
     TrackingLevel.FULL, Reason.MISSING_DELIVERY_SCAN),
    (3, facts("US", "5.00", "USD", "china-post", "ePacket"), scans(S.ACCEPTED, S.DELIVERED), True,
     TrackingLevel.FULL, None),
    (4, facts("SG", "6.90", "SGD", "yanwen"), scans(S.ACCEPTED), True, TrackingLevel.PARTIAL, None),
    (5, facts("SG", "7.00", "SGD", "yanwen"), scans(S.ATTEMPTED_DELIVERY), False, TrackingLevel.FULL,
     Reason.MISSING_DELIVERY_SCAN),
    (6, facts("AE", "25", "AED", "yunexpress", tracking_number="YT1234567890123456"),
     scans(S.ACCEPTED, S.ATTEMPTED_DELIVERY), True, TrackingLevel.FULL, None),
    (7, facts("SA", "19", "SAR", None), scans(S.ACCEPTED, S.DELIVERED), False, TrackingLevel.PARTIAL,
     Reason.CARRIER_NOT_INTEGRATED),
    (8, facts("JP", "999", "JPY", "yanwen"), scans(S.INFO_RECEIVED), False, TrackingLevel.PARTIAL,
     Reason.NO_PHYSICAL_SCAN),
    (9, facts("DE", "50", "EUR", "dhl", ship_from="DE"), scans(S.ACCEPTED), True, TrackingLevel.PARTIAL, None),
    (10, facts("MX", "200", "MXN", "yunexpress", tracking_number="YT1234567890123456"),
     scans(S.ACCEPTED, S.IN_TRANSIT, S.IN_TRANSIT), False, TrackingLevel.FULL, Reason.MISSING_DELIVERY_SCAN),
]  # fmt: skip


@pytest.mark.parametrize(("number", "shipment", "events", "valid", "level", "reason"), VECTORS, ids=lambda v: "")
def test_domain_vector_after_promised_date(
    policy: Policy,
    number: int,
    shipment: ShipmentFacts,
    events: list[Scan],
    valid: bool,
    level: TrackingLevel,
    reason: Reason | None,
) -> None:
    decision = decide(policy, shipment, summarise_scans(events), promised_date=PAST, today=TODAY)
    assert decision.state is (PackageState.VALID if valid else PackageState.INVALID), f"vector {number}"
    assert decision.required is level, f"vector {number}"
    assert decision.reason is reason, f"vector {number}"
    assert decision.probability == (1.0 if valid else 0.0)


@pytest.mark.parametrize(("number", "shipment", "events", "valid", "level", "reason"), VECTORS, ids=lambda v: "")
def test_domain_vector_before_promised_date(
    policy: Policy,
    number: int,
    shipment: ShipmentFacts,
    events: list[Scan],
    valid: bool,
    level: TrackingLevel,
    reason: Reason | None,
) -> None:
    decision = decide(policy, shipment, summarise_scans(events), promised_date=FUTURE, today=TODAY)
    if valid:
        assert decision.state is PackageState.VALID
    elif reason is Reason.CARRIER_NOT_INTEGRATED:
        # Structurally impossible: invalid at once, whatever the date.
        assert (decision.state, decision.probability) == (PackageState.INVALID, 0.0)
    else:
        assert decision.state is PackageState.PENDING, f"vector {number}"
        assert decision.reason is not None  # the model prices it (tests/scorer/test_model.py)


def test_mx_threshold_is_five_dollars_converted(policy: Policy) -> None:
    threshold = policy.threshold("MX")
    assert threshold.currency == "MXN"
    assert threshold.amount == Decimal(5) * policy.fx_per_usd["MXN"]
    just_below = facts("MX", str(threshold.amount - Decimal("0.01")), "MXN", "yunexpress")
    assert required_tracking(policy, just_below) is TrackingLevel.PARTIAL
    assert required_tracking(policy, replace(just_below, order_amount=str(threshold.amount))) is TrackingLevel.FULL


def test_order_value_in_another_currency_is_converted(policy: Policy) -> None:
    # 5 USD threshold; 4.00 EUR is about 4.35 USD (partial), 5.00 EUR about 5.43 USD (full).
    assert required_tracking(policy, facts("US", "4.00", "EUR", "china-post")) is TrackingLevel.PARTIAL
    assert required_tracking(policy, facts("US", "5.00", "EUR", "china-post")) is TrackingLevel.FULL


def test_unknown_currency_assumes_full_tracking(policy: Policy) -> None:
    assert required_tracking(policy, facts("US", "1", "XYZ", "china-post")) is TrackingLevel.FULL


def test_full_tracking_on_a_partial_only_service_is_invalid_at_confirmation(policy: Policy) -> None:
    surface = facts("US", "12.00", "USD", "china-post", "China Post 平邮")
    decision = decide(policy, surface, summarise_scans([]), promised_date=FUTURE, today=TODAY)
    assert (decision.state, decision.reason, decision.probability) == (
        PackageState.INVALID,
        Reason.SERVICE_LACKS_DELIVERY_SCAN,
        0.0,
    )
    # Below the threshold partial tracking suffices, and the same service is fine.
    cheap = replace(surface, order_amount="3.00")
    assert decide(policy, cheap, summarise_scans(scans(S.ACCEPTED)), promised_date=PAST, today=TODAY).state is (
        PackageState.VALID
    )


def test_carrier_integrated_only_in_one_marketplace() -> None:
    data = {
        "integrated_carriers": ["china-post"],
        "integrated_carriers_by_marketplace": {"JP": ["japan-post"]},
        "thresholds": {"US": {"amount": "5", "currency": "USD"}},
        "default_threshold": {"amount": "5", "currency": "USD"},
        "fx_per_usd": {"USD": "1"},
    }
    policy = policy_from_mapping(data)
    assert policy.is_integrated("japan-post", "JP")
    assert not policy.is_integrated("japan-post", "US")
    assert not policy.is_integrated(None, "US")


def test_cancelled_packages_are_excluded(policy: Policy) -> None:
    decision = decide(
        policy, facts("US", "4.99", "USD", "china-post"), summarise_scans([]), promised_date=PAST, today=TODAY,
        cancelled=True,
    )  # fmt: skip
    assert (decision.state, decision.reason) == (PackageState.CANCELLED, Reason.CANCELLED)


def test_buy_shipping_is_ordinary_by_default_and_protected_by_setting(policy: Policy) -> None:
    bought = replace(facts("US", "9.00", "USD", "china-post"), buy_shipping=True)
    assert decide(policy, bought, summarise_scans([]), promised_date=PAST, today=TODAY).state is PackageState.INVALID
    protected = replace(policy, buy_shipping_protected=True)
    assert decide(protected, bought, summarise_scans([]), promised_date=PAST, today=TODAY).state is PackageState.VALID


def test_promised_date_today_is_still_pending_and_yesterday_is_invalid(policy: Policy) -> None:
    shipment = facts("US", "4.99", "USD", "china-post")
    no_scans = summarise_scans([])
    assert decide(policy, shipment, no_scans, promised_date=TODAY, today=TODAY).state is PackageState.PENDING
    late = decide(policy, shipment, no_scans, promised_date=TODAY - timedelta(days=1), today=TODAY)
    assert (late.state, late.reason) == (PackageState.INVALID, Reason.NO_PHYSICAL_SCAN)


def test_late_scan_turns_an_invalid_package_valid(policy: Policy) -> None:
    shipment = facts("US", "4.99", "USD", "china-post")
    late_scan = [Scan(S.ACCEPTED, datetime(2026, 6, 14, 23, 0, tzinfo=UTC))]
    decision = decide(policy, shipment, summarise_scans(late_scan), promised_date=date(2026, 6, 1), today=TODAY)
    assert decision.state is PackageState.VALID


def test_malformed_tracking_number_is_a_risk_not_a_rejection(policy: Policy) -> None:
    shipment = facts("US", "4.99", "USD", "china-post", tracking_number="RR123456789CN")  # wrong check digit
    pending = decide(policy, shipment, summarise_scans([]), promised_date=FUTURE, today=TODAY)
    assert pending.reason is Reason.MALFORMED_TRACKING_NUMBER
    well_formed = decide(
        policy, replace(shipment, tracking_number="RR123456785CN"), summarise_scans([]), promised_date=FUTURE,
        today=TODAY,
    )  # fmt: skip
    assert well_formed.reason is Reason.AWAITING_FIRST_SCAN
    # A scan proves the number works after all.
    assert decide(policy, shipment, summarise_scans(scans(S.ACCEPTED)), promised_date=FUTURE, today=TODAY).state is (
        PackageState.VALID
    )
    flagged = replace(shipment, tracking_number="ANYTHING", carrier="yanwen", risk_flags=("malformed_tracking_number",))
    late = decide(policy, flagged, summarise_scans([]), promised_date=PAST, today=TODAY)
    assert late.reason is Reason.MALFORMED_TRACKING_NUMBER


@pytest.mark.parametrize(
    ("number", "valid"),
    [("RR123456785CN", True), ("RR123456789CN", False), ("RR123456785US", False), ("RR12345678CN", False)],
)
def test_s10_check_digit(number: str, valid: bool) -> None:
    assert s10_valid(number) is valid


def test_the_same_scan_from_two_sources_counts_once() -> None:
    # China Post and 17TRACK report the same acceptance, seconds apart within the minute.
    direct = Scan(S.ACCEPTED, T0.replace(second=5))
    aggregated = Scan(S.ACCEPTED, T0.replace(second=40))
    assert summarise_scans([direct, aggregated]).physical_scans == 1
    # A different status in the same minute is another scan.
    assert summarise_scans([direct, Scan(S.IN_TRANSIT, T0)]).physical_scans == 2


def test_scans_after_the_evaluation_day_are_not_counted() -> None:
    events = scans(S.ACCEPTED, S.DELIVERED)
    summary = summarise_scans(events, occurred_before=events[1].occurred_at)
    assert (summary.physical_scans, summary.has_delivery_scan) == (1, False)


statuses = st.sampled_from(list(CanonicalStatus))
moments = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC))


@given(st.lists(st.tuples(statuses, moments), max_size=30), st.randoms())
def test_scan_summary_ignores_order_and_duplicates(pairs: list[tuple[CanonicalStatus, datetime]], rnd: object) -> None:
    events = [Scan(status, moment) for status, moment in pairs]
    shuffled = events + events[: len(events) // 2]
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert summarise_scans(shuffled) == summarise_scans(events)


@given(st.lists(st.tuples(statuses, moments), max_size=30))
def test_validity_never_decreases_when_scans_are_added(pairs: list[tuple[CanonicalStatus, datetime]]) -> None:
    policy_data = {
        "integrated_carriers": ["china-post"],
        "thresholds": {"US": {"amount": "5", "currency": "USD"}},
        "default_threshold": {"amount": "5", "currency": "USD"},
        "fx_per_usd": {"USD": "1"},
    }
    policy = policy_from_mapping(policy_data)
    shipment = facts("US", "10", "USD", "china-post")
    was_valid = False
    for end in range(len(pairs) + 1):
        events = [Scan(status, moment) for status, moment in pairs[:end]]
        state = decide(policy, shipment, summarise_scans(events), promised_date=PAST, today=TODAY).state
        assert not (was_valid and state is not PackageState.VALID)
        was_valid = state is PackageState.VALID


def test_a_pending_package_is_left_to_the_model(policy: Policy) -> None:
    # decide() says pending and why by the rules; services/scorer/model.py prices it.
    shipment = facts("US", "12.00", "USD", "china-post")
    decision = decide(policy, shipment, summarise_scans(scans(S.ACCEPTED)), promised_date=FUTURE, today=TODAY)
    assert (decision.state, decision.reason) == (PackageState.PENDING, Reason.AWAITING_DELIVERY_SCAN)


def test_marketplaces_without_a_threshold_convert_five_dollars_to_their_currency(policy: Policy) -> None:
    mexico = policy.threshold("MX")
    assert (mexico.amount, mexico.currency) == (Decimal("90"), "MXN")
