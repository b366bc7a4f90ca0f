"""Amazon's seller performance report (``GET_V2_SELLER_PERFORMANCE_REPORT``, schema
``accountHealthReport-2020-11-18``) into one :class:`AmazonVtr` per marketplace. Pure.

Read defensively: the schema's own example contradicts its properties (a
``validTrackingCount`` above the ``shipmentCount``, times without seconds, property
names that differ from the required list), so every field is optional here, and what
does not add up is kept with a note in ``problems`` rather than dropped or trusted.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import orjson

from services.ingest.amazon.marketplaces import MARKETPLACES
from services.ingest.amazon.orders import OrderProblem, parse_time
from shared.schemas import AmazonVtr, AmazonVtrStatus


class ReportProblem(ValueError):
    """The document is not a performance report at all."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _count(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number >= 0 and number == int(number) else None


def _day(value: Any) -> date | None:
    try:
        return parse_time(value).date()
    except OrderProblem:
        return None


def parse_performance_report(document: bytes, seller_id: str, report_id: str, fetched_at: datetime) -> list[AmazonVtr]:
    try:
        report = orjson.loads(document)
    except orjson.JSONDecodeError as error:
        raise ReportProblem(f"report document is not JSON: {error}") from None
    metrics = report.get("performanceMetrics") if isinstance(report, dict) else None
    if not isinstance(metrics, list):
        raise ReportProblem("report document has no performanceMetrics list")
    found: list[AmazonVtr] = []
    for entry in metrics:
        if not isinstance(entry, dict):
            continue
        marketplace = MARKETPLACES.get(str(entry.get("marketplaceId", "")))
        vtr = entry.get("validTrackingRate")
        if marketplace is None or not isinstance(vtr, dict):
            continue
        problems: list[str] = []
        dates = vtr.get("reportingDateRange") or {}
        start, end = _day(dates.get("reportingDateFrom")), _day(dates.get("reportingDateTo"))
        if start is None or end is None:
            problems.append("reporting_range_unreadable")
            start = end = fetched_at.date()
        rate = _number(vtr.get("rate"))
        if rate is not None and rate > 1:  # some reports give a percentage
            rate /= 100
            problems.append("rate_given_in_percent")
        if rate is not None and not 0 <= rate <= 1:
            problems.append("rate_out_of_range")
            rate = None
        shipments, valid = _count(vtr.get("shipmentCount")), _count(vtr.get("validTrackingCount"))
        if shipments is not None and valid is not None and valid > shipments:
            problems.append("counts_inconsistent")
        status_text = str(vtr.get("status", "NONE")).upper()
        status = AmazonVtrStatus(status_text) if status_text in AmazonVtrStatus.__members__ else AmazonVtrStatus.NONE
        if status_text not in AmazonVtrStatus.__members__:
            problems.append("status_unknown")
        found.append(
            AmazonVtr(
                seller_id=seller_id,
                marketplace=marketplace.code,
                marketplace_id=marketplace.marketplace_id,
                rate=rate,
                shipment_count=shipments,
                valid_tracking_count=valid,
                status=status,
                target_value=_number(vtr.get("targetValue")),
                reporting_from=start,
                reporting_to=end,
                report_id=report_id,
                fetched_at=fetched_at,
                problems=tuple(problems),
            )
        )
    return found
