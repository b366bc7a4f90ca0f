"""Applying batches to the database (SQLite and PostgreSQL): counters equal an independent
computation whatever the batching, order, duplication or redelivery of the records."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer.domain.evaluator import Evaluator
from services.scorer.domain.forecast import DayCounts
from services.scorer.domain.model.estimator import Model
from services.scorer.domain.model.lanes import Milestone
from services.scorer.domain.model.state import ModelState
from services.scorer.domain.packages import naive_utc, package_from_confirmation
from services.scorer.domain.policy import summarise_scans
from services.scorer.domain.records import SCAN_COLUMNS, PreparedRecords, prepare_record, scan_row
from services.scorer.storage.clock import expire_pending, mark_window_slide, review_due
from services.scorer.storage.counts import read_counts, recompute_counts
from services.scorer.storage.model_state import refresh_model
from services.scorer.storage.outbox import outbox_batch, outbox_remove
from services.scorer.storage.packages import ConcurrentUpdate, load_scans, write_packages
from services.scorer.storage.plan import apply_records
from services.scorer.storage.schema import model_state, outbox, packages, scans
from shared.schemas import CanonicalStatus, ShipmentCancelled, ShipmentConfirmed, TrackingEvent
from tests.scorer.conftest import NOW, TODAY, cancellation, event, generate, record, shipment

FAR = (TODAY - timedelta(days=60), TODAY + timedelta(days=30))
YANWEN = {"carrier_name": "Yanwen", "carrier": "yanwen", "service": "Yanwen Line"}

Message = TrackingEvent | ShipmentConfirmed | ShipmentCancelled


async def apply(engine: AsyncEngine, evaluator: Evaluator, messages: list[Message], today: date = TODAY) -> None:
    async with engine.begin() as connection:
        await apply_records(connection, evaluator, [record(m) for m in messages], today)


async def counts(engine: AsyncEngine, seller: str = "seller-1") -> dict[tuple[str, str], dict[date, DayCounts]]:
    async with engine.connect() as connection:
        found = await read_counts(connection, seller, *FAR, *FAR)
    return {scope: {day: c for day, c in entry.days.items() if c.total} for scope, entry in found.items() if entry.days}


def simple(found: dict[tuple[str, str], dict[date, DayCounts]]) -> dict[tuple[str, str, date], tuple[int, int, int]]:
    return {
        (*scope, day): (c.valid, c.invalid, c.pending)
        for scope, days in found.items()
        for day, c in days.items()
        if c.total
    }


async def test_events_before_their_shipment_are_applied_when_it_arrives(
    scorer_engine: AsyncEngine, evaluator: Evaluator
) -> None:
    await apply(scorer_engine, evaluator, [event(CanonicalStatus.ACCEPTED)])
    assert await counts(scorer_engine) == {}
    await apply(scorer_engine, evaluator, [shipment()])
    assert simple(await counts(scorer_engine)) == {("US", "toys", TODAY - timedelta(days=3)): (1, 0, 0)}


async def test_orders_shipped_together_share_the_scans(scorer_engine: AsyncEngine, evaluator: Evaluator) -> None:
    messages: list[Message] = [
        shipment("o-1"),
        shipment("o-2", category="books"),
        shipment("o-3", amount="20.00"),  # full tracking: needs a delivery scan too
        event(CanonicalStatus.ACCEPTED),
    ]
    await apply(scorer_engine, evaluator, messages)
    promised = TODAY - timedelta(days=3)
    assert simple(await counts(scorer_engine)) == {
        ("US", "toys", promised): (1, 1, 0),
        ("US", "books", promised): (1, 0, 0),
    }
    await apply(scorer_engine, evaluator, [event(CanonicalStatus.DELIVERED, occurred_at=NOW - timedelta(days=4))])
    assert simple(await counts(scorer_engine))[("US", "toys", promised)] == (2, 0, 0)


async def test_redelivered_batch_and_duplicate_events_change_nothing(
    scorer_engine: AsyncEngine, evaluator: Evaluator
) -> None:
    messages: list[Message] = [shipment(), event(), event(), shipment("o-2", promised=TODAY + timedelta(days=2))]
    await apply(scorer_engine, evaluator, messages)
    first = await counts(scorer_engine)
    async with scorer_engine.connect() as connection:
        marks = await outbox_batch(connection, 10)
    async with scorer_engine.begin() as connection:
        await outbox_remove(connection, marks)
    await apply(scorer_engine, evaluator, messages)
    assert await counts(scorer_engine) == first
    async with scorer_engine.connect() as connection:
        assert await outbox_batch(connection, 10) == []


async def test_the_same_scan_from_two_sources_is_one_scan(scorer_engine: AsyncEngine, evaluator: Evaluator) -> None:
    # Full tracking needs two scans; the same delivery reported twice is still one.
    delivered = NOW - timedelta(days=5)
    await apply(
        scorer_engine,
        evaluator,
        [
            shipment(amount="9.00"),
            event(CanonicalStatus.DELIVERED, occurred_at=delivered, source="china-post"),
            event(CanonicalStatus.DELIVERED, occurred_at=delivered + timedelta(seconds=20), source="17track"),
        ],
    )
    assert simple(await counts(scorer_engine)) == {("US", "toys", TODAY - timedelta(days=3)): (0, 1, 0)}
    async with scorer_engine.connect() as connection:
        stored = await load_scans(connection, {"RR123456785CN"})
    scans_seen = summarise_scans(stored["RR123456785CN"]).physical_scans
    assert len(stored["RR123456785CN"]) == 2  # both events are kept
    assert scans_seen == 1


@pytest.mark.parametrize("cancel_first", [False, True])
async def test_cancellation_excludes_the_order_in_any_arrival_order(
    scorer_engine: AsyncEngine, evaluator: Evaluator, cancel_first: bool
) -> None:
    messages: list[Message] = [shipment("o-1"), shipment("o-2"), cancellation(seller_id="seller-1", order_id="o-1")]
    if cancel_first:
        messages.reverse()
    await apply(scorer_engine, evaluator, messages[:1])
    await apply(scorer_engine, evaluator, messages[1:])
    assert simple(await counts(scorer_engine)) == {("US", "toys", TODAY - timedelta(days=3)): (0, 1, 0)}


async def test_a_cancellation_before_a_reconfirmation_does_not_cancel_it(
    scorer_engine: AsyncEngine, evaluator: Evaluator
) -> None:
    await apply(scorer_engine, evaluator, [shipment(), cancellation()])
    assert simple(await counts(scorer_engine)) == {}
    reconfirmed = shipment(confirmed_at=NOW - timedelta(days=7))
    await apply(scorer_engine, evaluator, [reconfirmed])
    assert simple(await counts(scorer_engine)) == {("US", "toys", TODAY - timedelta(days=3)): (0, 1, 0)}


async def test_a_corrected_confirmation_moves_the_package(scorer_engine: AsyncEngine, evaluator: Evaluator) -> None:
    await apply(scorer_engine, evaluator, [shipment(), event()])
    corrected = shipment(promised=TODAY - timedelta(days=5), category="books", confirmed_at=NOW - timedelta(days=9))
    await apply(scorer_engine, evaluator, [corrected])
    # A stale copy of the first confirmation arriving late changes nothing.
    await apply(scorer_engine, evaluator, [shipment()])
    assert simple(await counts(scorer_engine)) == {("US", "books", TODAY - timedelta(days=5)): (1, 0, 0)}


async def test_clock_job_expires_pending_packages_and_marks_the_outbox(
    scorer_engine: AsyncEngine, evaluator: Evaluator
) -> None:
    promised = TODAY
    await apply(
        scorer_engine,
        evaluator,
        [shipment("o-1", promised=promised), shipment("o-2", promised=promised + timedelta(days=1))],
    )
    assert simple(await counts(scorer_engine)) == {
        ("US", "toys", promised): (0, 0, 1),
        ("US", "toys", promised + timedelta(days=1)): (0, 0, 1),
    }
    async with scorer_engine.begin() as connection:
        await outbox_remove(connection, await outbox_batch(connection, 10))
    tomorrow = TODAY + timedelta(days=1)
    async with scorer_engine.begin() as connection:
        assert await expire_pending(connection, evaluator, tomorrow, limit=100) == 1
    assert simple(await counts(scorer_engine)) == {
        ("US", "toys", promised): (0, 1, 0),
        ("US", "toys", tomorrow): (0, 0, 1),
    }
    async with scorer_engine.connect() as connection:
        assert [m[:3] for m in await outbox_batch(connection, 10)] == [("seller-1", "US", "toys")]
    async with scorer_engine.begin() as connection:
        assert await expire_pending(connection, evaluator, tomorrow, limit=100) == 0
    # A late scan still turns it valid.
    await apply(scorer_engine, evaluator, [event(occurred_at=NOW + timedelta(days=1))], today=tomorrow)
    assert simple(await counts(scorer_engine))[("US", "toys", promised)] == (1, 0, 0)


async def test_clock_reviews_make_an_unscanned_package_overdue_as_time_passes(
    scorer_engine: AsyncEngine, evaluator: Evaluator
) -> None:
    promised = TODAY + timedelta(days=10)
    confirmed = datetime.combine(TODAY, datetime.min.time()) + timedelta(hours=2)
    await apply(
        scorer_engine,
        evaluator,
        [shipment("o-1", promised=promised, confirmed_at=confirmed.replace(tzinfo=UTC))],
    )
    async with scorer_engine.begin() as connection:
        await outbox_remove(connection, await outbox_batch(connection, 10))
        # Not due yet: it was evaluated at noon today and is next reviewed hours later.
        assert await review_due(connection, evaluator, TODAY, 100, confirmed + timedelta(hours=11)) == 0
        fresh = (await counts(scorer_engine))[("US", "toys")][promised].expected_valid
    later = confirmed + timedelta(days=4)
    async with scorer_engine.begin() as connection:
        assert await review_due(connection, evaluator, later.date(), 100, later) == 1
    async with scorer_engine.begin() as connection:
        assert await review_due(connection, evaluator, later.date(), 100, later) == 0  # reviewed once
        assert [m[:3] for m in await outbox_batch(connection, 10)] == [("seller-1", "US", "toys")]
        state, reason = (await connection.execute(select(packages.c.state, packages.c.reason))).one()
    assert (state, reason) == ("pending", "overdue_first_scan")
    overdue = (await counts(scorer_engine))[("US", "toys")][promised].expected_valid
    assert fresh > 0.9 and overdue < fresh / 2
    # A scan clears it.
    await apply(scorer_engine, evaluator, [event(occurred_at=later.replace(tzinfo=UTC))], today=later.date())
    assert simple(await counts(scorer_engine))[("US", "toys", promised)] == (1, 0, 0)


async def test_a_refreshed_model_makes_the_affected_lanes_due_for_review(
    scorer_engine: AsyncEngine, evaluator: Evaluator
) -> None:
    """Shipments first, scans afterwards (an ERP backfill): once the model is refreshed the
    probabilities equal those of a database that got the scans first."""
    history = [
        shipment(f"h-{i}", tracking_number=f"UG{i:09d}YP", promised=TODAY - timedelta(days=2),
                 confirmed_at=NOW - timedelta(days=12), **YANWEN)
        for i in range(30)
    ]  # fmt: skip
    upcoming = shipment(
        "o-new", tracking_number="UG999999999YP", promised=TODAY + timedelta(days=8), confirmed_at=NOW, **YANWEN
    )
    scans_of_history = [
        event(tracking_number=f"UG{i:09d}YP", occurred_at=NOW - timedelta(days=12, hours=-10), event_id=f"e{i}")
        for i in range(30)
    ]  # fmt: skip

    async def probability(engine: AsyncEngine) -> float:
        async with engine.connect() as connection:
            return (
                int(
                    (
                        await connection.execute(
                            select(packages.c.probability_micro).where(packages.c.order_id == "o-new")
                        )
                    ).scalar_one()
                )
                / 1_000_000
            )

    await apply(scorer_engine, evaluator, [*history, upcoming])
    async with scorer_engine.begin() as connection:
        await refresh_model(connection, evaluator, datetime.combine(TODAY, datetime.min.time()) + timedelta(hours=12))
        await review_due(connection, evaluator, TODAY, 100)
    shipments_only = await probability(scorer_engine)
    await apply(scorer_engine, evaluator, scans_of_history)
    async with scorer_engine.begin() as connection:
        marked = await refresh_model(
            connection, evaluator, datetime.combine(TODAY, datetime.min.time()) + timedelta(hours=12, minutes=5)
        )
        assert marked >= 1
        await review_due(connection, evaluator, TODAY, 100)
    after_scans = await probability(scorer_engine)
    # Nothing was ever scanned: the lane looked dead. With its history scanned it is healthy.
    assert shipments_only < 0.5 < 0.9 < after_scans
    # The stored state is the lane's (sellers merged), with the carrier's health.
    async with scorer_engine.connect() as connection:
        body = (await connection.execute(select(model_state.c.body))).scalar_one()
    stored = ModelState.from_json(msgspec.json.decode(body))
    assert {lane for lane, _ in stored.histograms} == {("", "yanwen", "yanwen line", "CN", "US")}
    assert sum(stored.histograms[(("", "yanwen", "yanwen line", "CN", "US"), Milestone.FIRST_SCAN)].events) > 0
    assert set(stored.health) == {("yanwen", "CN")}


async def test_a_refresh_makes_due_the_pending_packages_of_the_lanes_that_moved_only(
    scorer_engine: AsyncEngine, evaluator: Evaluator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review after a refresh grows with what moved: of one seller's packages with one
    carrier, only those of the lane whose model moved (whatever the spelling of its
    service) are made due; another marketplace's lane keeps its review time."""
    await apply(scorer_engine, evaluator, [
        shipment("o-a", tracking_number="UG000000001YP", promised=TODAY + timedelta(days=8), confirmed_at=NOW,
                 **YANWEN),
        shipment("o-a2", tracking_number="UG000000002YP", promised=TODAY + timedelta(days=8), confirmed_at=NOW,
                 **{**YANWEN, "service": "YANWEN LINE"}),
        shipment("o-b", tracking_number="UG000000003YP", promised=TODAY + timedelta(days=8), confirmed_at=NOW,
                 marketplace="DE", **YANWEN),
    ])  # fmt: skip
    noon = datetime.combine(TODAY, datetime.min.time()) + timedelta(hours=12)
    async with scorer_engine.begin() as connection:
        await refresh_model(connection, evaluator, noon)
        await review_due(connection, evaluator, TODAY, 100, noon)
    moved = ("seller-1", "yanwen", "yanwen line", "CN", "US")

    def changed_lanes(self: Model, previous: Model | None, lanes: set[tuple[str, ...]]) -> set[tuple[str, ...]]:
        assert moved in lanes and len(lanes) == 2
        return {moved}

    monkeypatch.setattr(Model, "changed_lanes", changed_lanes)
    async with scorer_engine.begin() as connection:
        marked = await refresh_model(connection, evaluator, noon + timedelta(minutes=5))
        rows = await connection.execute(select(packages.c.order_id, packages.c.review_at.is_(None)))
        due = {order: bool(is_due) for order, is_due in rows}
    assert marked == 2
    assert due == {"o-a": True, "o-a2": True, "o-b": False}


async def test_a_parcel_silent_far_longer_than_its_lane_allows_is_stalled_through_the_database(
    scorer_engine: AsyncEngine, evaluator: Evaluator
) -> None:
    """The model refresh learns the lane's silences between scans from the scans table;
    of two full-tracking parcels scanned five and a half days ago, the one silent since (its
    lane's silences last up to about two days) is stalled, the one scanned three hours
    ago is on its way. (With the delivery prior of 97% delivered, a lane that lost none of
    its hundred parcels makes a loss a 1% prior: a five-day silence then halves a parcel's
    chance only just; five and a half days do.)"""
    path = ((CanonicalStatus.ACCEPTED, 10), (CanonicalStatus.IN_TRANSIT, 30), (CanonicalStatus.IN_TRANSIT, 70),
            (CanonicalStatus.ARRIVED_DESTINATION, 115), (CanonicalStatus.OUT_FOR_DELIVERY, 160),
            (CanonicalStatus.DELIVERED, 166))  # fmt: skip
    messages: list[Message] = []
    for i in range(100):
        confirmed, number, pace = NOW - timedelta(days=14, hours=i), f"UG{i:09d}YP", 1 + i / 250
        messages.append(shipment(f"h-{i}", tracking_number=number, amount="20.00", promised=TODAY - timedelta(days=8),
                                 confirmed_at=confirmed, **YANWEN))  # fmt: skip
        messages += [event(status, tracking_number=number, occurred_at=confirmed + timedelta(hours=hours * pace))
                     for status, hours in path]  # fmt: skip
    # Both first scanned five and a half days ago, before the lane's usual delivery (7 days).
    for order_id, number, last_scan_hours_ago in (("quiet", "UG900000001YP", 132), ("moving", "UG900000002YP", 3)):
        messages.append(shipment(order_id, tracking_number=number, amount="20.00", promised=TODAY + timedelta(days=6),
                                 confirmed_at=NOW - timedelta(days=6), **YANWEN))  # fmt: skip
        messages += [
            event(CanonicalStatus.ACCEPTED, tracking_number=number, occurred_at=NOW - timedelta(days=5, hours=12)),
            event(
                CanonicalStatus.IN_TRANSIT,
                tracking_number=number,
                occurred_at=NOW - timedelta(hours=last_scan_hours_ago),
            ),
        ]
    await apply(scorer_engine, evaluator, messages)
    async with scorer_engine.begin() as connection:
        await refresh_model(connection, evaluator, NOW.replace(tzinfo=None))
        await review_due(connection, evaluator, TODAY, 100, NOW.replace(tzinfo=None))
    async with scorer_engine.connect() as connection:
        rows = await connection.execute(
            select(packages.c.order_id, packages.c.probability_micro, packages.c.reason).where(
                packages.c.order_id.in_(["quiet", "moving"])
            )
        )
        found = {order_id: (probability / 1_000_000, reason) for order_id, probability, reason in rows}
    m = evaluator.model
    lane = ("seller-1", "yanwen", "yanwen line", "CN", "US")
    from services.scorer.domain.model.lanes import Milestone as MM

    print(
        "DBG going",
        m.going_silent(lane),
        "usual",
        m.usual_hours(lane, MM.DELIVERY),
        "G24",
        m.silence_survival(lane, MM.GAP_TRANSIT, 24),
        "reach",
        m.curve(lane, MM.DELIVERY).reach_by(132, 132 + 8.7 * 24),
        [round(x, 3) for x in m.curve(lane, MM.DELIVERY).survival[::6]],
    )
    assert found["moving"][0] > 0.8 and found["moving"][1] == "awaiting_delivery_scan"
    assert found["quiet"][0] < 0.5 and found["quiet"][1] == "stalled_in_transit"
    # The lane's silences are part of the stored state (across sellers; 100 parcels x 3
    # transit silences, weighted by recency: a parcel 14-18 days old weighs about a fifth).
    async with scorer_engine.connect() as connection:
        body = (await connection.execute(select(model_state.c.body))).scalar_one()
    stored = ModelState.from_json(msgspec.json.decode(body))
    assert sum(stored.histograms[(("", "yanwen", "yanwen line", "CN", "US"), Milestone.GAP_TRANSIT)].events) > 40


async def test_window_slide_is_marked_once_per_day(scorer_engine: AsyncEngine, evaluator: Evaluator) -> None:
    await apply(scorer_engine, evaluator, [shipment(), event()])
    async with scorer_engine.begin() as connection:
        await outbox_remove(connection, await outbox_batch(connection, 10))
    async with scorer_engine.begin() as connection:
        assert await mark_window_slide(connection, TODAY, 0, 14)
    async with scorer_engine.begin() as connection:
        assert not await mark_window_slide(connection, TODAY, 0, 14)
        marks = await outbox_batch(connection, 10)
    assert [m[:3] for m in marks] == [("seller-1", "US", "toys")]
    async with scorer_engine.begin() as connection:
        await outbox_remove(connection, marks)
        assert await mark_window_slide(connection, TODAY + timedelta(days=1), 0, 14)
        assert len(await outbox_batch(connection, 10)) == 1


async def test_outbox_keeps_a_mark_that_changed_while_publishing(
    scorer_engine: AsyncEngine, evaluator: Evaluator
) -> None:
    await apply(scorer_engine, evaluator, [shipment()])
    async with scorer_engine.connect() as connection:
        read = await outbox_batch(connection, 10)
    await apply(scorer_engine, evaluator, [event()])  # changes the numbers after the read
    async with scorer_engine.begin() as connection:
        await outbox_remove(connection, read)
        assert len(await outbox_batch(connection, 10)) == 1


async def test_a_stale_writer_is_refused(scorer_engine: AsyncEngine, evaluator: Evaluator) -> None:
    await apply(scorer_engine, evaluator, [shipment()])
    async with scorer_engine.begin() as connection:
        await connection.execute(update(packages).values(version=packages.c.version + 1))
    stale = replace(package_from_confirmation(shipment()), version=2)
    with pytest.raises(ConcurrentUpdate):
        async with scorer_engine.begin() as connection:
            await write_packages(connection, [stale])
    async with scorer_engine.connect() as connection:
        assert (await connection.execute(select(outbox.c.version))).scalar_one() == 1


async def test_a_rolled_back_batch_leaves_nothing_behind(scorer_engine: AsyncEngine, evaluator: Evaluator) -> None:
    """On PostgreSQL the batch's first statement is a COPY on the driver connection: it
    must run inside the batch's transaction, so a rollback takes it back with the rest."""
    assert tuple(scan_row(event())) == SCAN_COLUMNS  # the COPY sends a scan row's values in this order
    with pytest.raises(RuntimeError, match="boom"):
        async with scorer_engine.begin() as connection:
            await apply_records(connection, evaluator, [record(event()), record(shipment())], TODAY)
            raise RuntimeError("boom")
    async with scorer_engine.connect() as connection:
        assert (await connection.execute(select(scans.c.event_id))).all() == []
        assert (await connection.execute(select(packages.c.id))).all() == []
    # The same records apply afterwards (the staging tables were emptied by the rollback).
    await apply(scorer_engine, evaluator, [event(), shipment()])
    await apply(scorer_engine, evaluator, [event(), shipment()])
    async with scorer_engine.connect() as connection:
        assert len((await connection.execute(select(scans.c.event_id))).all()) == 1
        assert (await connection.execute(select(packages.c.version))).scalar_one() == 1


async def test_two_writes_in_one_transaction_write_each_row_once(
    scorer_engine: AsyncEngine, evaluator: Evaluator
) -> None:
    """The staging tables are emptied at commit: a second write in the same transaction
    must not send the first one's rows again."""
    first = replace(package_from_confirmation(shipment(order_id="o-1", tracking_number="T1")), version=1)
    second = replace(package_from_confirmation(shipment(order_id="o-2", tracking_number="T2")), version=1)
    async with scorer_engine.begin() as connection:
        await write_packages(connection, [first])
        await write_packages(connection, [second])  # would raise ConcurrentUpdate if o-1 came again
    async with scorer_engine.begin() as connection:
        await apply_records(connection, evaluator, [record(event(tracking_number="T1"))], TODAY)
        await apply_records(connection, evaluator, [record(event(tracking_number="T2", event_id="e-2"))], TODAY)
    async with scorer_engine.connect() as connection:
        assert sorted((await connection.execute(select(packages.c.order_id))).scalars()) == ["o-1", "o-2"]
        assert len((await connection.execute(select(scans.c.event_id))).all()) == 2


async def test_past_as_of_counts_only_scans_that_occurred_by_then(
    scorer_engine: AsyncEngine, evaluator: Evaluator
) -> None:
    promised = TODAY - timedelta(days=5)
    await apply(
        scorer_engine,
        evaluator,
        [
            shipment(promised=promised),
            event(occurred_at=datetime.combine(TODAY - timedelta(days=2), datetime.min.time(), NOW.tzinfo)),
        ],
    )
    async with scorer_engine.connect() as connection:
        before = await recompute_counts(connection, evaluator, "seller-1", TODAY - timedelta(days=3), *FAR, *FAR)
        after = await recompute_counts(connection, evaluator, "seller-1", TODAY - timedelta(days=2), *FAR, *FAR)
        today = await read_counts(connection, "seller-1", *FAR, *FAR)
    assert before[("US", "toys")].days[promised] == DayCounts(invalid=1)
    assert before[("US", "toys")].reasons == {"no_physical_scan": 1}
    assert after[("US", "toys")].days[promised] == DayCounts(valid=1)
    assert today[("US", "toys")].days[promised] == DayCounts(valid=1)


# -- order independence against an independent computation --------------------------------


@pytest.mark.parametrize("seed", [1, 2])
async def test_any_batching_and_order_gives_the_independently_computed_counters(
    scorer_engine: AsyncEngine, evaluator: Evaluator, seed: int
) -> None:
    messages, expected = generate(seed, TODAY, NOW)
    rnd = random.Random(seed)
    rnd.shuffle(messages)
    position = 0
    while position < len(messages):
        size = rnd.randint(1, 40)
        await apply(scorer_engine, evaluator, messages[position : position + size])
        position += size
    assert simple(await counts(scorer_engine)) == drop_seller(expected)
    # Replaying everything (a crash before the offsets were stored) changes nothing.
    await apply(scorer_engine, evaluator, messages)
    assert simple(await counts(scorer_engine)) == drop_seller(expected)
    # A recomputation for today agrees with the counters.
    async with scorer_engine.connect() as connection:
        recomputed = await recompute_counts(connection, evaluator, "seller-1", TODAY, *FAR, *FAR)
    assert {
        (*scope, day): (c.valid, c.invalid, c.pending) for scope, e in recomputed.items() for day, c in e.days.items()
    } == drop_seller(expected)


def drop_seller(
    expected: dict[tuple[str, str, str, date], tuple[int, int, int]],
) -> dict[tuple[str, str, date], tuple[int, int, int]]:
    return {key[1:]: value for key, value in expected.items()}


async def test_unusable_records_are_skipped_and_the_rest_applied(
    scorer_engine: AsyncEngine, evaluator: Evaluator
) -> None:
    from aiokafka import ConsumerRecord

    from services.scorer import metrics
    from shared.topics import SHIPMENTS

    def raw(value: bytes | None, topic: str = SHIPMENTS) -> ConsumerRecord[bytes, bytes]:
        return ConsumerRecord(topic, 0, 0, 0, 0, b"k", value, None, 1, len(value or b""), [])

    invalid_before = metrics.RECORDS.labels(SHIPMENTS, "invalid")._value.get()
    bad = [
        raw(b"not json"),
        raw(None),
        raw(b'{"type": "confirmed"}'),
        record(shipment("o-nul", category="to\x00ys")),
        record(shipment("o-long", tracking_number="X" * 500)),
        record(event(tracking_number="Y" * 500)),
        record(event(occurred_at=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))))),
        raw(b"{}", topic="somebody.elses.topic"),
    ]
    async with scorer_engine.begin() as connection:
        await apply_records(connection, evaluator, [*bad, record(shipment()), record(event())], TODAY)
    assert simple(await counts(scorer_engine)) == {("US", "toys", TODAY - timedelta(days=3)): (1, 0, 0)}
    assert metrics.RECORDS.labels(SHIPMENTS, "invalid")._value.get() - invalid_before == 5


async def test_old_counter_rows_are_pruned(scorer_engine: AsyncEngine, evaluator: Evaluator) -> None:
    from services.scorer.storage.clock import prune_counters

    old = TODAY - timedelta(days=120)
    await apply(scorer_engine, evaluator, [shipment("o-old", promised=old, tracking_number="T1"), shipment()])
    async with scorer_engine.connect() as connection:
        everything = await read_counts(connection, "seller-1", old, TODAY, old, TODAY)
    assert set(everything[("US", "toys")].days) == {old, TODAY - timedelta(days=3)}
    assert everything[("US", "toys")].reasons == {"no_physical_scan": 2}
    async with scorer_engine.begin() as connection:
        await prune_counters(connection, TODAY - timedelta(days=90))
    async with scorer_engine.connect() as connection:
        remaining = await read_counts(connection, "seller-1", old, TODAY, old, TODAY)
    assert set(remaining[("US", "toys")].days) == {TODAY - timedelta(days=3)}
    assert remaining[("US", "toys")].reasons == {"no_physical_scan": 1}


async def test_clock_job_racing_the_consumer_never_counts_twice(
    scorer_engine: AsyncEngine, evaluator: Evaluator
) -> None:
    import asyncio

    tomorrow = TODAY + timedelta(days=1)
    await apply(scorer_engine, evaluator, [shipment(promised=TODAY)])
    clock = await scorer_engine.connect()
    transaction = await clock.begin()
    assert await expire_pending(clock, evaluator, tomorrow, limit=10) == 1  # not committed yet

    async def consume() -> None:
        await apply(scorer_engine, evaluator, [event(occurred_at=NOW)], today=tomorrow)

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    await transaction.commit()
    await clock.close()
    try:
        await consumer
    except ConcurrentUpdate:
        await consume()  # what the transactional consumer does: roll back, retry the batch
    assert simple(await counts(scorer_engine)) == {("US", "toys", TODAY): (1, 0, 0)}


async def test_records_decoded_ahead_give_the_same_state_and_serve_one_attempt(
    scorer_engine: AsyncEngine, evaluator: Evaluator
) -> None:
    """The service decodes the next batch's records while a batch waits for the database
    (``BatchApplier.prepare_records``). Applying from them equals decoding in the batch;
    an entry whose bytes are not the record's (the offset holds another record now) is not
    used; entries are used up by an attempt, so a rolled-back batch decodes afresh rather
    than reuse rows its failed attempt evaluated in place."""
    day = TODAY - timedelta(days=3)
    records = [record(shipment("o-1")), record(shipment("o-2", category="books")), record(event())]
    prepared: PreparedRecords = {(r.topic, r.partition, r.offset): prepare_record(r) for r in records}
    other = record(shipment("o-2", category="garden"))
    prepared[(records[1].topic, records[1].partition, records[1].offset)] = prepare_record(other)

    async with scorer_engine.connect() as connection:
        transaction = await connection.begin()
        await apply_records(connection, evaluator, records, TODAY, prepared=prepared)
        await transaction.rollback()
    assert prepared == {}
    assert await counts(scorer_engine) == {}

    prepared.update({(r.topic, r.partition, r.offset): prepare_record(r) for r in records[:1]})
    async with scorer_engine.begin() as connection:
        await apply_records(connection, evaluator, records, TODAY, prepared=prepared)
    assert prepared == {}
    assert simple(await counts(scorer_engine)) == {("US", "toys", day): (1, 0, 0), ("US", "books", day): (1, 0, 0)}


@given(
    moment=st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9000, 12, 30)),
    offset_minutes=st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
)
def test_naive_utc_is_the_utc_wall_time(moment: datetime, offset_minutes: int) -> None:
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    assert naive_utc(aware) == aware.astimezone(UTC).replace(tzinfo=None)
    assert naive_utc(aware).tzinfo is None
    assert naive_utc(moment) is moment  # naive times are taken as UTC already
