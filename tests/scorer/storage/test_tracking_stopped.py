"""An aggregator's "stopped tracking" notice (17TRACK TRACKING_STOPPED, issue 11 item 5)
becomes the reason a seller sees, until a scan arrives after it (the number was registered
again)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.carriers import seventeen_track
from services.scorer.domain.evaluator import Evaluator
from services.scorer.domain.policy import TRACKING_STOPPED_STATUS, Policy, Scan, decide, summarise_scans
from services.scorer.storage.plan import apply_records
from services.scorer.storage.schema import packages
from shared.schemas import CanonicalStatus, PackageState, Reason, ShipmentConfirmed, TrackingEvent
from tests.scorer.conftest import FUTURE, NOW, T0, TODAY, event, facts, record, shipment


def test_a_stop_without_later_scans_is_the_pending_reason(policy: Policy) -> None:
    stopped = Scan(TRACKING_STOPPED_STATUS, T0 + timedelta(days=2))
    accepted = Scan(CanonicalStatus.ACCEPTED, T0)
    shipment_facts = facts("US", "5.00", "USD", "china-post", "ePacket")
    summary = summarise_scans([accepted, stopped])
    assert (summary.physical_scans, summary.tracking_stopped) == (1, True)
    decision = decide(policy, shipment_facts, summary, promised_date=FUTURE, today=FUTURE - timedelta(days=3))
    assert (decision.state, decision.reason) == (PackageState.PENDING, Reason.TRACKING_STOPPED)
    # Registered again: a scan after the stop clears it.
    later = Scan(CanonicalStatus.IN_TRANSIT, T0 + timedelta(days=3))
    assert summarise_scans([accepted, stopped, later]).tracking_stopped is False
    # The notice is no scan: a package with only the notice has no physical scan.
    assert summarise_scans([stopped]).physical_scans == 0


async def test_the_17track_notice_reaches_the_package(scorer_engine: AsyncEngine, evaluator: Evaluator) -> None:
    body = b'{"event": "TRACKING_STOPPED", "data": {"number": "RR123456785CN", "carrier": 3011}}'
    [notice] = seventeen_track.parse(body, NOW - timedelta(days=2))
    messages: list[TrackingEvent | ShipmentConfirmed] = [
        shipment(amount="5.00", promised=TODAY + timedelta(days=5)),
        event(CanonicalStatus.ACCEPTED, occurred_at=NOW - timedelta(days=9)),
        notice,
    ]
    async with scorer_engine.begin() as connection:
        await apply_records(connection, evaluator, [record(message) for message in messages], TODAY)
    async with scorer_engine.connect() as connection:
        state, reason = (await connection.execute(select(packages.c.state, packages.c.reason))).one()
    assert (state, reason) == (PackageState.PENDING.value, Reason.TRACKING_STOPPED.value)
