"""Amazon's own VTR beside vtrwatch's (issue 22): the comparison of one seller x
marketplace over Amazon's reporting range. Pure.

vtrwatch's side is counted over Amazon's range exactly as the VTR window is (packages by
promised delivery date, every category of the marketplace, cancelled ones left out; a
package still pending after its promised date counts as invalid, as in the window). The
difference is vtrwatch's rate minus Amazon's, in percentage points.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any

#: A difference larger than this (percentage points) is worth an SRE's look (the alert).
ALERT_POINTS = 1.0


@dataclass(frozen=True)
class OwnCounts:
    valid: int
    invalid: int
    pending: int

    @property
    def total(self) -> int:
        return self.valid + self.invalid + self.pending

    @property
    def rate(self) -> float | None:
        return self.valid / self.total if self.total else None


def difference_points(own: float | None, amazon: float | None) -> float | None:
    """vtrwatch's rate minus Amazon's, in percentage points (None when either is missing)."""
    if own is None or amazon is None:
        return None
    return round((own - amazon) * 100, 2)


def comparison(row: Any, own: OwnCounts) -> dict[str, Any]:
    """The API's and the console's view of one stored Amazon figure and vtrwatch's counts."""
    difference = difference_points(own.rate, row.rate)
    return {
        "marketplace": row.marketplace,
        "reporting_range": {"from": row.reporting_from.isoformat(), "to": row.reporting_to.isoformat()},
        "amazon": {
            "rate": row.rate,
            "shipment_count": row.shipment_count,
            "valid_tracking_count": row.valid_tracking_count,
            "status": row.status,
            "target_value": row.target_value,
            "report_id": row.report_id,
            "fetched_at": row.fetched_at.replace(tzinfo=UTC).isoformat(),
            "bad_since": row.bad_since.replace(tzinfo=UTC).isoformat() if row.bad_since else None,
            "problems": [p for p in row.problems.split(",") if p],
        },
        "vtrwatch": {
            "rate": round(own.rate, 6) if own.rate is not None else None,
            "shipment_count": own.total,
            "valid_tracking_count": own.valid,
            "invalid": own.invalid,
            "pending": own.pending,
        },
        "difference_points": difference,
        "over_alert_threshold": difference is not None and abs(difference) > ALERT_POINTS,
    }
