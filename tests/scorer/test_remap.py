"""Codes learnt later (issue 11 item 13): scans stored as UNKNOWN become scans once the
code table maps their code, and their packages recover, without a replay by hand."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from msgspec.structs import replace
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.mapping import MAPPING_FILE, load_mappings
from services.scorer.domain.evaluator import Evaluator
from services.scorer.remap import ingest_code_table, remap_unknown_scans
from services.scorer.storage.plan import apply_records
from services.scorer.storage.schema import packages, scans
from shared.schemas import CanonicalStatus, PackageState, ShipmentConfirmed, TrackingEvent
from tests.scorer.conftest import NOW, TODAY, event, record, shipment


def unknown(code: str, source: str, tracking_number: str, hours: int = 0) -> TrackingEvent:
    scan = event(
        CanonicalStatus.UNKNOWN,
        tracking_number=tracking_number,
        source=source,
        occurred_at=NOW - timedelta(days=9, hours=hours),
        event_id=f"{source}-{code}-{tracking_number}",
    )
    return replace(scan, carrier_code=code)


async def _states(engine: AsyncEngine) -> dict[str, tuple[str, str | None]]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(packages.c.tracking_number, packages.c.state, packages.c.reason))
        return {number: (state, reason) for number, state, reason in rows}


async def test_unknown_scans_become_scans_when_the_table_learns_their_code(
    scorer_engine: AsyncEngine, evaluator: Evaluator, tmp_path: Path
) -> None:
    learnt_later = "RR123456785CN"
    known_today = "LK000000000CN"
    never = "RR000000000CN"
    future = TODAY + timedelta(days=5)
    messages: list[TrackingEvent | ShipmentConfirmed] = [
        shipment("o-1", tracking_number=learnt_later, promised=future),
        shipment("o-2", tracking_number=known_today, promised=future),
        shipment("o-3", tracking_number=never, promised=future),
        # China Post 747 is in no table yet (carriers.md lists it as undocumented).
        unknown("747", "china-post", learnt_later),
        # Stored as UNKNOWN by an older ingest whose table lacked AfterShip's subtags.
        unknown("InTransit_002", "aftership", known_today),
        unknown("999", "china-post", never),
    ]
    async with scorer_engine.begin() as connection:
        await apply_records(connection, evaluator, [record(message) for message in messages], TODAY)
    before = await _states(scorer_engine)
    assert {number: state for number, (state, _) in before.items()} == {
        learnt_later: PackageState.PENDING.value,
        known_today: PackageState.PENDING.value,
        never: PackageState.PENDING.value,
    }

    # Today's table maps the AfterShip subtag; 747 stays unknown.
    first = await remap_unknown_scans(scorer_engine, evaluator, ingest_code_table(), TODAY)
    assert (first.examined, first.remapped, first.learnt) == (3, 1, {"aftership:InTransit_002": "ACCEPTED"})
    assert (await _states(scorer_engine))[known_today] == (PackageState.VALID.value, None)
    assert (await _states(scorer_engine))[learnt_later][0] == PackageState.PENDING.value

    # One line of data maps 747: the package recovers.
    extended = tmp_path / "codes.toml"
    extended.write_text(
        MAPPING_FILE.read_text(encoding="utf-8").replace(
            '"704" = "DELIVERED"', '"704" = "DELIVERED"\n"747" = "IN_TRANSIT"'
        ),
        encoding="utf-8",
    )
    table = load_mappings(extended)
    second = await remap_unknown_scans(scorer_engine, evaluator, lambda source, code: table[source].status(code), TODAY)
    assert (second.examined, second.remapped) == (2, 1)
    after = await _states(scorer_engine)
    assert after[learnt_later] == (PackageState.VALID.value, None)
    assert after[never][0] == PackageState.PENDING.value
    async with scorer_engine.connect() as connection:
        statuses = dict((await connection.execute(select(scans.c.carrier_code, scans.c.status))).all())
    assert statuses == {"747": "IN_TRANSIT", "InTransit_002": "ACCEPTED", "999": "UNKNOWN"}

    # Idempotent: nothing left to learn.
    again = await remap_unknown_scans(scorer_engine, evaluator, lambda source, code: table[source].status(code), TODAY)
    assert (again.remapped, again.packages_written) == (0, 0)
