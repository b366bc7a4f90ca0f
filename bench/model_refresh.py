"""The clock job's cost against the number of stored packages and against what changed:
the model refresh (the first one of a scorer reads the whole learning period; the next
ones what was written since) and the review of the pending packages that are due.

    python -m bench.model_refresh --stored 100000 1000000 --changes 1000 10000 100000

For each size, a scratch PostgreSQL database is filled (COPY) with synthetic packages
confirmed over the model's 56-day learning period (8 lanes, 200 sellers; 97% delivered,
the youngest pending, every pending package due for review) and the physical scans of the
last 28 days' packages, then, as the clock job runs them: ``refresh_model`` (#1, reads
everything), ``review_due`` over every pending package, a refresh that reads back what
the review wrote (#2), one after nothing was written (#3, the steady state), and for each
of ``--changes``, 5 minutes later, N writes (N new packages, and a new scan on N stored
parcels), a refresh and the review of what is due then (the new packages and those of the
lanes whose model moved). Prints one line per size and figure; the machine's other load is
not controlled, so run it alternated against a baseline when comparing changes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import asyncpg

from services.scorer.domain.evaluator import Evaluator
from services.scorer.domain.policy import load_policy
from services.scorer.settings import ScorerSettings
from services.scorer.storage.clock import review_due
from services.scorer.storage.model_state import refresh_model
from services.scorer.storage.schema import metadata
from shared.db import create_engine

POSTGRES_ADMIN = os.environ.get("VTR_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LANES = (
    ("yunexpress", "line", "AE"),
    ("yanwen", "line", "SG"),
    ("china-post", "epacket", "US"),
    ("4px", "standard", "MX"),
    ("sfc", "priority", "AU"),
    ("yunexpress", "line", "SA"),
    ("china-post", "epacket", "UK"),
    ("yanwen", "line", "JP"),
)
SOURCES = {"yunexpress": "yunexpress", "yanwen": "yanwen", "china-post": "china-post-ems", "4px": "17track",
           "sfc": "17track"}  # fmt: skip
PACKAGE_COLUMNS = (
    "seller_id", "order_id", "marketplace", "category", "tracking_number", "carrier_name", "carrier", "service",
    "order_amount", "order_currency", "ship_from_country", "buy_shipping", "risk_flags", "confirmed_at",
    "received_at", "promised_date", "state", "reason", "required_tracking", "probability_micro", "first_scan_at",
    "delivery_scan_at", "last_scan_at", "review_at", "version",
)  # fmt: skip
SCAN_COLUMNS = ("event_id", "tracking_number", "status", "occurred_at", "received_at", "source")


def rows(stored: int, now: datetime, seed: int = 1) -> Iterator[tuple[tuple[object, ...], list[tuple[object, ...]]]]:
    rng = random.Random(seed)
    span_hours = 56 * 24
    for index in range(stored):
        carrier, service, marketplace = LANES[index % len(LANES)]
        confirmed = now - timedelta(hours=rng.uniform(1, span_hours))
        first = confirmed + timedelta(hours=rng.uniform(6, 40))
        delivered = first + timedelta(hours=rng.uniform(120, 260))
        failed = rng.random() < 0.03
        number = f"BN{index:012d}CN"
        promised = (confirmed + timedelta(days=rng.randint(10, 16))).date()
        first_at = first if first <= now and not failed else None
        delivery_at = delivered if delivered <= now and first_at is not None else None
        if delivery_at is not None:
            state, reason = "valid", None
        elif promised < now.date():
            state, reason = "invalid", "no_physical_scan"
        else:
            state, reason = "pending", "awaiting_first_scan" if first_at is None else "awaiting_delivery_scan"
        package = (
            f"BS{index % 200:04d}", f"O{index}", marketplace, "Electronics", number, carrier, carrier, service,
            "12.00", "USD", "CN", False, "", confirmed, confirmed, promised, state, reason, "full", 900_000,
            first_at, delivery_at, delivery_at or first_at, None, 1,
        )  # fmt: skip
        scans: list[tuple[object, ...]] = []
        if first_at is not None and confirmed >= now - timedelta(days=28):
            moments = [("ACCEPTED", first_at), ("IN_TRANSIT", first_at + timedelta(hours=30))]
            if delivery_at is not None:
                moments.append(("DELIVERED", delivery_at))
            for status, moment in moments:
                if moment <= now:
                    scans.append((uuid.uuid4().hex, number, status, moment, moment, SOURCES[carrier]))
        yield package, scans


async def fill(url: str, stored: int, now: datetime) -> int:
    connection = await asyncpg.connect(url)
    try:
        packages: list[tuple[object, ...]] = []
        scans: list[tuple[object, ...]] = []
        pending = 0
        for package, package_scans in rows(stored, now):
            packages.append(package)
            scans.extend(package_scans)
            pending += package[16] == "pending"
            if len(packages) >= 50_000:
                await connection.copy_records_to_table("packages", records=packages, columns=PACKAGE_COLUMNS)
                await connection.copy_records_to_table("scans", records=scans, columns=SCAN_COLUMNS)
                packages, scans = [], []
        if packages:
            await connection.copy_records_to_table("packages", records=packages, columns=PACKAGE_COLUMNS)
            await connection.copy_records_to_table("scans", records=scans, columns=SCAN_COLUMNS)
        await connection.execute("ANALYZE")
        return pending
    finally:
        await connection.close()


async def change(url: str, stored: int, changes: int, now: datetime, round_: int = 0) -> None:
    """What a busy scorer writes between two refreshes: ``changes`` new packages (confirmed
    in the last hour, not scanned yet) and a new in-transit scan for as many stored parcels."""
    connection = await asyncpg.connect(url)
    try:
        rng = random.Random(2 + round_)
        fresh = []
        for index, (package, _) in enumerate(rows(changes, now, seed=2 + round_)):
            confirmed = now - timedelta(minutes=rng.uniform(1, 60))
            promised = (confirmed + timedelta(days=12)).date()
            fresh.append((*package[:1], f"N{round_}-{index}", *package[2:4], f"NEW{round_}-{index:09d}",
                          *package[5:13], confirmed, confirmed, promised, "pending", "awaiting_first_scan",
                          *package[18:20], None, None, None, None, 1))  # fmt: skip
        await connection.copy_records_to_table("packages", records=fresh, columns=PACKAGE_COLUMNS)
        picked = random.Random(100 + round_).sample(range(stored), min(stored, changes))
        numbers = [f"BN{index:012d}CN" for index in picked]
        moment = now - timedelta(minutes=1)
        scans = [(uuid.uuid4().hex, number, "IN_TRANSIT", moment, moment, "17track") for number in numbers]
        await connection.copy_records_to_table("scans", records=scans, columns=SCAN_COLUMNS)
        await connection.execute(
            "UPDATE packages SET last_scan_at = $2, version = version + 1 WHERE tracking_number = ANY($1::text[])"
            " AND first_scan_at IS NOT NULL AND delivery_scan_at IS NULL",
            numbers,
            moment,
        )
    finally:
        await connection.close()


async def measure(stored: int, changes: list[int]) -> None:
    name = f"vtrwatch_bench_model_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    plain = POSTGRES_ADMIN.rsplit("/", 1)[0] + "/" + name
    url = plain.replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        today: date = now.date()
        started = time.perf_counter()
        pending = await fill(plain, stored, now)
        print(
            f"{stored:>10,} stored: filled in {time.perf_counter() - started:.1f} s ({pending:,} pending)", flush=True
        )
        settings = ScorerSettings(database_url=url, api_keys="bench")  # type: ignore[arg-type]
        evaluator = Evaluator(load_policy(settings.policy_file))

        async def refresh(label: str) -> None:
            started = time.perf_counter()
            async with engine.begin() as connection:
                marked = await refresh_model(connection, evaluator, now)
            print(f"{stored:>10,} stored: model refresh {label} {time.perf_counter() - started:.2f} s "
                  f"({evaluator.build.packages:,} packages in the learning period, {marked:,} pending made due)",
                  flush=True)  # fmt: skip

        async def review(label: str) -> None:
            started = time.perf_counter()
            reviewed = 0
            while True:
                async with engine.begin() as connection:
                    written = await review_due(connection, evaluator, today, 2000, now)
                reviewed += written
                if written < 2000:
                    break
            print(f"{stored:>10,} stored: review {label}: {reviewed:,} packages {time.perf_counter() - started:.2f} s",
                  flush=True)  # fmt: skip

        await refresh("#1 (reads everything)")
        await review(f"of every pending ({pending:,})")
        await refresh("#2 (reads back what the review wrote)")
        await refresh("#3 (nothing written)")
        for round_, count in enumerate(changes, start=1):
            now += timedelta(minutes=5)
            await change(plain, stored, count, now, round_)
            await refresh(f"after {count:,} new packages and {count:,} new scans")
            await review(f"after {count:,} + {count:,} writes")
    finally:
        await engine.dispose()
        admin = await asyncpg.connect(POSTGRES_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.model_refresh", description=__doc__)
    parser.add_argument("--stored", type=int, nargs="+", default=[100_000])
    parser.add_argument(
        "--changes",
        type=int,
        nargs="+",
        default=[1_000, 10_000],
        help="writes before each further refresh (new packages, and new scans on stored parcels)",
    )
    arguments = parser.parse_args()
    for stored in arguments.stored:
        await measure(stored, arguments.changes)


if __name__ == "__main__":
    asyncio.run(main())
