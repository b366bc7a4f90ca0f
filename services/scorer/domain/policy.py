"""Whether a package's tracking is valid: the rules of domain.md section 2, as a pure function.

The policy data (integrated carriers, thresholds, FX rates, partial-only services, Buy
Shipping treatment, forecast prior) lives in ``policy.toml`` and is loaded into
:class:`Policy`; nothing here does I/O except :func:`load_policy`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from services.scorer.model import ModelSettings
from shared.schemas import DELIVERY_SCAN_STATUSES, PHYSICAL_SCAN_STATUSES, PackageState, Reason, TrackingLevel

#: The policy data sits beside the service (operators point VTR_POLICY_FILE at it), not in this package.
DEFAULT_POLICY_FILE = Path(__file__).resolve().parents[1] / "policy.toml"

#: Marketplace -> its currency, for thresholds of marketplaces without their own entry.
MARKETPLACE_CURRENCIES: dict[str, str] = {
    "US": "USD", "CA": "CAD", "MX": "MXN", "BR": "BRL", "UK": "GBP", "GB": "GBP", "DE": "EUR", "FR": "EUR",
    "IT": "EUR", "ES": "EUR", "NL": "EUR", "BE": "EUR", "SE": "SEK", "PL": "PLN", "JP": "JPY", "AU": "AUD",
    "SG": "SGD", "AE": "AED", "SA": "SAR", "EG": "EGP", "TR": "TRY", "IN": "INR",
}  # fmt: skip

#: Reasons that make a package invalid the moment it is confirmed (probability 0).
STRUCTURAL_REASONS = frozenset({Reason.CARRIER_NOT_INTEGRATED, Reason.SERVICE_LACKS_DELIVERY_SCAN})

#: Scans within the same minute with the same status are one physical scan reported twice
#: (e.g. by China Post directly and by 17TRACK, with different event ids).
SCAN_IDENTITY_RESOLUTION_SECONDS = 60

#: Why a not-yet-valid package is not valid, before and after its promised date passes.
_PENDING_REASON_TO_INVALID: dict[Reason, Reason] = {
    Reason.AWAITING_FIRST_SCAN: Reason.NO_PHYSICAL_SCAN,
    Reason.OVERDUE_FIRST_SCAN: Reason.NO_PHYSICAL_SCAN,
    Reason.AWAITING_DELIVERY_SCAN: Reason.MISSING_DELIVERY_SCAN,
    Reason.STALLED_IN_TRANSIT: Reason.MISSING_DELIVERY_SCAN,
    Reason.SERVICE_RARELY_SCANS_DELIVERY: Reason.MISSING_DELIVERY_SCAN,
    # Only for a read between a promised date passing and the clock job: the clock job's
    # decision names the scan that is missing.
    Reason.CARRIER_SILENT: Reason.NO_PHYSICAL_SCAN,
    Reason.MALFORMED_TRACKING_NUMBER: Reason.MALFORMED_TRACKING_NUMBER,
}


@dataclass(frozen=True)
class Threshold:
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class Policy:
    integrated_carriers: frozenset[str]
    integrated_carriers_by_marketplace: Mapping[str, frozenset[str]]
    thresholds: Mapping[str, Threshold]
    default_threshold: Threshold
    fx_per_usd: Mapping[str, Decimal]
    threshold_origins: frozenset[str]
    partial_only_service_keywords: tuple[str, ...]
    tracking_number_patterns: Mapping[str, re.Pattern[str]]
    buy_shipping_protected: bool = False
    forecast: ModelSettings = field(default_factory=ModelSettings)

    def is_integrated(self, carrier: str | None, marketplace: str) -> bool:
        if carrier is None:
            return False
        return carrier in self.integrated_carriers or carrier in self.integrated_carriers_by_marketplace.get(
            marketplace, frozenset()
        )

    def is_partial_only(self, service: str | None) -> bool:
        if not service:
            return False
        name = service.casefold()
        return any(keyword in name for keyword in self.partial_only_service_keywords)

    def convert(self, amount: Decimal, from_currency: str, to_currency: str) -> Decimal | None:
        """``amount`` in ``to_currency``, or None when a rate is missing."""
        if from_currency == to_currency:
            return amount
        source, target = self.fx_per_usd.get(from_currency), self.fx_per_usd.get(to_currency)
        if source is None or target is None or source == 0:
            return None
        return amount / source * target

    def threshold(self, marketplace: str) -> Threshold:
        known = self.thresholds.get(marketplace)
        if known is not None:
            return known
        local_currency = MARKETPLACE_CURRENCIES.get(marketplace)
        if local_currency is not None:
            converted = self.convert(self.default_threshold.amount, self.default_threshold.currency, local_currency)
            if converted is not None:
                return Threshold(converted, local_currency)
        return self.default_threshold


def load_policy(path: Path = DEFAULT_POLICY_FILE) -> Policy:
    with path.open("rb") as file:
        data = tomllib.load(file)
    return policy_from_mapping(data)


def policy_from_mapping(data: Mapping[str, Any]) -> Policy:
    def threshold(entry: Mapping[str, Any]) -> Threshold:
        return Threshold(Decimal(str(entry["amount"])), str(entry["currency"]))

    forecast = data.get("forecast", {})
    return Policy(
        integrated_carriers=frozenset(data["integrated_carriers"]),
        integrated_carriers_by_marketplace={
            marketplace: frozenset(carriers)
            for marketplace, carriers in data.get("integrated_carriers_by_marketplace", {}).items()
        },
        thresholds={marketplace: threshold(entry) for marketplace, entry in data["thresholds"].items()},
        default_threshold=threshold(data["default_threshold"]),
        fx_per_usd={currency: Decimal(str(rate)) for currency, rate in data["fx_per_usd"].items()},
        threshold_origins=frozenset(data.get("threshold_origins", ["CN"])),
        partial_only_service_keywords=tuple(k.casefold() for k in data.get("partial_only_service_keywords", ())),
        tracking_number_patterns={
            carrier: re.compile(pattern) for carrier, pattern in data.get("tracking_number_patterns", {}).items()
        },
        buy_shipping_protected=bool(data.get("buy_shipping", {}).get("protected", False)),
        forecast=model_settings(forecast),
    )


def model_settings(values: Mapping[str, Any]) -> ModelSettings:
    """The ``[forecast]`` table; unknown keys are refused so a typo does not go unnoticed."""
    known = {f.name: f.type for f in fields(ModelSettings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown [forecast] settings in the policy file: {', '.join(unknown)}")
    return ModelSettings(**{name: type(getattr(ModelSettings(), name))(value) for name, value in values.items()})


# -- facts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShipmentFacts:
    """What the policy needs to know about a confirmed order."""

    marketplace: str
    carrier: str | None
    service: str | None
    tracking_number: str
    order_amount: str
    order_currency: str
    ship_from_country: str = "CN"
    buy_shipping: bool = False
    risk_flags: tuple[str, ...] = ()


#: The stored status of an aggregator's "stopped tracking" notice (TrackingEvent.notice):
#: not a scan, it makes a package without later scans pending for Reason.TRACKING_STOPPED.
TRACKING_STOPPED_STATUS = "TRACKING_STOPPED"


@dataclass(frozen=True, slots=True)
class Scan:
    status: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class ScanSummary:
    """Distinct physical scans of a tracking number."""

    physical_scans: int = 0
    has_delivery_scan: bool = False
    last_scan_at: datetime | None = None
    first_scan_at: datetime | None = None
    #: The first delivery or delivery-attempt scan.
    delivery_scan_at: datetime | None = None
    #: The aggregator said it stopped tracking the number, and no scan came after that.
    tracking_stopped: bool = False
    #: Status of the last physical scan (the stage a silent parcel stopped in).
    last_scan_status: str | None = None


NO_SCANS = ScanSummary()


_EPOCH_NAIVE = datetime(1970, 1, 1)
_EPOCH_UTC = _EPOCH_NAIVE.replace(tzinfo=UTC)
_RESOLUTION = timedelta(seconds=SCAN_IDENTITY_RESOLUTION_SECONDS)


def _minute(moment: datetime) -> int:
    """Index of the resolution interval; naive date-times are UTC (as stored)."""
    return (moment - (_EPOCH_NAIVE if moment.tzinfo is None else _EPOCH_UTC)) // _RESOLUTION


#: How far along its path a parcel is at each status: of two scans at the same moment, the
#: further one is the last (whatever order they arrived in).
_PROGRESS = {
    status: rank
    for rank, status in enumerate(
        (
            "ACCEPTED",
            "IN_TRANSIT",
            "EXCEPTION",
            "RETURNED",
            "ARRIVED_DESTINATION",
            "OUT_FOR_DELIVERY",
            "ATTEMPTED_DELIVERY",
            "DELIVERED",
        )
    )
}


def summarise_scans(scans: Iterable[Scan], occurred_before: datetime | None = None) -> ScanSummary:
    """Count distinct physical scans; ``occurred_before`` limits them to an evaluation day."""
    distinct: set[tuple[str, int]] = set()
    first: datetime | None = None
    last: datetime | None = None
    delivery: datetime | None = None
    stopped: datetime | None = None
    last_status: str | None = None
    for scan in scans:
        moment = scan.occurred_at
        if occurred_before is not None and moment >= occurred_before:
            continue
        if scan.status == TRACKING_STOPPED_STATUS:
            stopped = moment if stopped is None else max(stopped, moment)
            continue
        if scan.status not in PHYSICAL_SCAN_STATUSES:
            continue
        distinct.add((scan.status, _minute(moment)))
        if scan.status in DELIVERY_SCAN_STATUSES and (delivery is None or moment < delivery):
            delivery = moment
        if last is None or moment > last:
            last, last_status = moment, scan.status
        elif moment == last and (_PROGRESS[scan.status], scan.status) > (_PROGRESS[last_status], last_status):  # type: ignore[index]
            last_status = scan.status
        if first is None or moment < first:
            first = moment
    return ScanSummary(
        len(distinct),
        delivery is not None,
        last,
        first,
        delivery,
        stopped is not None and (last is None or stopped > last),
        last_status,
    )


# -- the decision ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    state: PackageState
    reason: Reason | None
    required: TrackingLevel
    #: Probability of being valid by the promised date: 1 valid, 0 structurally impossible.
    probability: float


def required_tracking(policy: Policy, facts: ShipmentFacts) -> TrackingLevel:
    """Partial below the marketplace threshold, full at or above it (CN origin only)."""
    if facts.ship_from_country not in policy.threshold_origins:
        return TrackingLevel.PARTIAL
    threshold = policy.threshold(facts.marketplace)
    try:
        amount = Decimal(facts.order_amount)
    except InvalidOperation:
        return TrackingLevel.FULL
    value = policy.convert(amount, facts.order_currency, threshold.currency)
    if value is None:
        # Without a rate the value cannot be placed; assume the stricter requirement.
        return TrackingLevel.FULL
    return TrackingLevel.FULL if value >= threshold.amount else TrackingLevel.PARTIAL


def tracking_number_malformed(policy: Policy, facts: ShipmentFacts) -> bool:
    if Reason.MALFORMED_TRACKING_NUMBER.value in facts.risk_flags:
        return True
    if facts.carrier == "china-post" and len(facts.tracking_number) == 13 and facts.tracking_number[:2].isalpha():
        return not s10_valid(facts.tracking_number)
    pattern = policy.tracking_number_patterns.get(facts.carrier or "")
    return pattern is not None and pattern.fullmatch(facts.tracking_number) is None


_S10 = re.compile(r"^[A-Z]{2}(\d{8})(\d)([A-Z]{2})$")
_S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)


def s10_valid(number: str) -> bool:
    """UPU S10: 2 letters, 8 digits, mod-11 check digit, country; China Post items end in CN."""
    match = _S10.fullmatch(number)
    if match is None or match.group(3) != "CN":
        return False
    remainder = 11 - sum(int(d) * w for d, w in zip(match.group(1), _S10_WEIGHTS, strict=True)) % 11
    check = {10: 0, 11: 5}.get(remainder, remainder)
    return check == int(match.group(2))


def requirement_met(level: TrackingLevel, scans: ScanSummary) -> bool:
    if level is TrackingLevel.FULL:
        return scans.physical_scans >= 2 and scans.has_delivery_scan
    return scans.physical_scans >= 1


def structural_reason(policy: Policy, facts: ShipmentFacts, level: TrackingLevel) -> Reason | None:
    """A reason the package can never become valid, known at confirmation."""
    if not policy.is_integrated(facts.carrier, facts.marketplace):
        return Reason.CARRIER_NOT_INTEGRATED
    if level is TrackingLevel.FULL and policy.is_partial_only(facts.service):
        return Reason.SERVICE_LACKS_DELIVERY_SCAN
    return None


def pending_reason(level: TrackingLevel, scans: ScanSummary, malformed: bool) -> Reason:
    if scans.tracking_stopped:
        # No scan will come until the number is registered with the aggregator again.
        return Reason.TRACKING_STOPPED
    if scans.physical_scans == 0:
        return Reason.MALFORMED_TRACKING_NUMBER if malformed else Reason.AWAITING_FIRST_SCAN
    return Reason.AWAITING_DELIVERY_SCAN if level is TrackingLevel.FULL else Reason.AWAITING_FIRST_SCAN


def invalid_reason_for(pending: Reason) -> Reason:
    """The reason a pending package carries once its promised date has passed."""
    return _PENDING_REASON_TO_INVALID.get(pending, pending)


def decide(
    policy: Policy,
    facts: ShipmentFacts,
    scans: ScanSummary,
    *,
    promised_date: date,
    today: date,
    cancelled: bool = False,
    level: TrackingLevel | None = None,
) -> Decision:
    """State of one package on ``today`` given its distinct scans.

    ``level`` is :func:`required_tracking` when the caller already computed it. A pending
    package gets probability 1 and its rule-based reason here; the model
    (:meth:`services.scorer.model.Model.estimate`) replaces both with what it learnt.
    """
    if level is None:
        level = required_tracking(policy, facts)
    if cancelled:
        return Decision(PackageState.CANCELLED, Reason.CANCELLED, level, 0.0)
    if facts.buy_shipping and policy.buy_shipping_protected:
        return Decision(PackageState.VALID, None, level, 1.0)
    structural = structural_reason(policy, facts, level)
    if structural is not None:
        return Decision(PackageState.INVALID, structural, level, 0.0)
    if requirement_met(level, scans):
        return Decision(PackageState.VALID, None, level, 1.0)
    malformed = tracking_number_malformed(policy, facts)
    reason = pending_reason(level, scans, malformed)
    if promised_date < today:
        return Decision(PackageState.INVALID, invalid_reason_for(reason), level, 0.0)
    return Decision(PackageState.PENDING, reason, level, 1.0)
