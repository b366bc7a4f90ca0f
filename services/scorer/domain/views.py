"""What the API and the console show of packages: a package's view, its last-mile identity,
and the shipments list's page cursors."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import NamedTuple

from services.scorer.domain.packages import MICRO, PackageRow
from services.scorer.domain.policy import Policy, ScanSummary, invalid_reason_for
from shared.schemas import Money, PackageState, PackageView, Reason, TrackingLevel
from shared.wording import advice_for

CENT = Decimal("0.01")


class LastMile(NamedTuple):
    carrier: str
    tracking_number: str


NO_LAST_MILE = LastMile("", "")


def encode_cursor(package_id: int) -> str:
    return base64.urlsafe_b64encode(str(package_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Raises ValueError for anything that is not a cursor this API handed out."""
    padded = cursor + "=" * (-len(cursor) % 4)
    text = base64.urlsafe_b64decode(padded.encode()).decode()
    # ASCII digits of a row id that fits the database's BIGINT.
    if not (text.isascii() and text.isdigit()) or int(text) >= 2**63:
        raise ValueError("not a cursor")
    return int(text)


def aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


def package_view(
    row: PackageRow, scans: ScanSummary, today: date, threshold: Money, last_mile: LastMile = NO_LAST_MILE
) -> PackageView:
    """What the API and the console show of a package."""
    state = PackageState(row.state)
    reason = Reason(row.reason) if row.reason else None
    probability = row.probability_micro / MICRO
    if state is PackageState.PENDING and row.promised_date < today:
        # The clock job has not run since the promised date passed; report what it will write.
        state, probability = PackageState.INVALID, 0.0
        reason = invalid_reason_for(reason) if reason else None
    return PackageView(
        order_id=row.order_id,
        tracking_number=row.tracking_number,
        marketplace=row.marketplace,
        category=row.category,
        carrier_name=row.carrier_name,
        carrier=row.carrier,
        service=row.service,
        order_value=Money(row.order_amount, row.order_currency),
        confirmed_at=row.confirmed_at.replace(tzinfo=UTC),
        promised_delivery_date=row.promised_date,
        state=state,
        reason=reason,
        required_tracking=TrackingLevel(row.required_tracking),
        physical_scans=scans.physical_scans,
        last_scan_at=aware(scans.last_scan_at),
        probability_valid=probability,
        action=advice_for(reason),
        full_tracking_threshold=threshold,
        last_mile_carrier=last_mile.carrier,
        last_mile_tracking_number=last_mile.tracking_number,
        source=row.source,
        risk_flags=tuple(flag for flag in row.risk_flags.split(",") if flag),
    )


def full_tracking_threshold(policy: Policy, marketplace: str) -> Money:
    """The order value from which ``marketplace`` requires full tracking, as the API shows it."""
    threshold = policy.threshold(marketplace)
    return Money(f"{threshold.amount.quantize(CENT).normalize():f}", threshold.currency)
