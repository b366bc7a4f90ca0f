"""The scorer's state in the database: applying a batch of input records, the clock job's
writes, and the reads behind the API.

Every write path goes through :func:`reevaluate`: given packages before and after a change
it evaluates them with the policy, and writes, with one statement per kind of row, the
changed packages (version-checked), the counter deltas, the learning-statistics deltas and
the outbox marks. Counters are sorted by key so concurrent transactions lock rows in the
same order.

The state is a function of the *set* of messages seen, not of their order: scans are
stored by event id, the newest confirmation of an order wins, and a cancellation applies
to confirmations not newer than itself. Redelivered or reordered records change nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, time, timedelta
from operator import attrgetter
from typing import Any, TypeVar

import msgspec
from aiokafka import ConsumerRecord
from sqlalchemy import (
    String,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    column,
    delete,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scorer import metrics
from services.scorer.domain.forecast import DayCounts
from services.scorer.domain.model.carrier_health import carrier_health
from services.scorer.domain.model.estimator import Model
from services.scorer.domain.model.lanes import STAGE_OF_SCAN, LaneKey
from services.scorer.domain.model.observations import InFlight, observations_of, selected_from, silence_observations
from services.scorer.domain.model.parameters import ModelSettings
from services.scorer.domain.model.state import ModelState
from services.scorer.policy import (
    STRUCTURAL_REASONS,
    TRACKING_STOPPED_STATUS,
    Policy,
    Scan,
    ShipmentFacts,
    decide,
    invalid_reason_for,
    required_tracking,
    summarise_scans,
    tracking_number_malformed,
)
from services.scorer.projection import LAG_DAYS, RecentPackage, project
from services.scorer.schema import (
    cancellations,
    clock_state,
    daily_counts,
    daily_reasons,
    model_state,
    outbox,
    packages,
    projected_counts,
    scans,
)
from shared.schemas import (
    DELIVERY_SCAN_STATUSES,
    NOTICE_TRACKING_STOPPED,
    PHYSICAL_SCAN_STATUSES,
    SHIPMENT_CODEC,
    TRACKING_EVENT_CODEC,
    CarrierHealthNote,
    ContractError,
    PackageState,
    Reason,
    ShipmentCancelled,
    ShipmentConfirmed,
    TrackingEvent,
    TrackingLevel,
)
from shared.topics import SHIPMENTS, TRACKING_EVENTS, normalise_tracking_number

log = logging.getLogger(__name__)

T = TypeVar("T")
U = TypeVar("U")

MICRO = 1_000_000
#: Bound on bound parameters per IN list (SQLite and asyncpg both cap parameters per statement).
IN_CHUNK = 2000
_JSON = msgspec.json.Encoder()


class ConcurrentUpdate(RuntimeError):
    """A package changed under this transaction (another writer won); retry the batch."""


def naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    # Arithmetic, not ``replace(tzinfo=None)``: ten times faster, and this runs for every
    # time of every record.
    return _NAIVE_EPOCH + (moment - _UTC_EPOCH)


_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def service_key(service: str | None) -> str:
    return (service or "").strip().casefold()[:200]


def dialect_insert(connection: AsyncConnection, table: Table) -> Any:
    """INSERT with ON CONFLICT support for the connection's backend."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_rows(connection: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> tuple[Any, Any]:
    """An INSERT (with ON CONFLICT support) of ``rows`` and the parameters to execute it with.

    On PostgreSQL the rows travel as one JSON document (``INSERT .. SELECT .. FROM
    json_to_recordset(..)``): one statement and one parameter whatever the number of rows.
    msgspec encodes a 5000-row batch in a millisecond or two, where asyncpg's array encoding
    (the earlier ``unnest`` of one array per column) checked every element against the
    collection ABCs and cost the scorer a quarter of its CPU. SQLite gets an executemany.
    """
    if connection.dialect.name != "postgresql":
        return sqlite.insert(table), list(rows)
    names = list(rows[0])
    document = bindparam("rows", _JSON.encode(rows).decode(), type_=Text())
    source = (
        func.json_to_recordset(cast(document, postgresql.JSON))
        .table_valued(*(column(name, table.c[name].type) for name in names))
        .render_derived(name="r", with_types=True)
    )
    return postgresql.insert(table).from_select(names, select(*(source.c[name] for name in names))), None


async def execute_rows(connection: AsyncConnection, statement: Any, parameters: Any) -> Any:
    if parameters is None:
        return await connection.execute(statement)
    return await connection.execute(statement, parameters)


async def overlapped(statement: Coroutine[Any, Any, T], work: Callable[[], U]) -> tuple[T, U]:
    """Run ``work`` (CPU only; it must not touch the connection) while ``statement`` waits
    for the database: still one statement at a time on the connection, but the scorer's CPU
    and the server's overlap instead of taking turns."""
    pending = asyncio.ensure_future(statement)
    try:
        await asyncio.sleep(0)  # let the statement reach the server
        result = work()
    except BaseException:
        # Never leave a statement running on a connection that is about to roll back.
        pending.cancel()
        with contextlib.suppress(BaseException):
            await pending
        raise
    return await pending, result


def uses_copy(connection: AsyncConnection) -> bool:
    """Whether bulk writes go through COPY into a staging table (PostgreSQL with asyncpg)."""
    return connection.dialect.name == "postgresql" and connection.dialect.driver == "asyncpg"


async def driver_connection(connection: AsyncConnection) -> Any:
    """The asyncpg connection under ``connection``, inside ``connection``'s transaction.

    SQLAlchemy's asyncpg adapter opens the transaction with its first statement: if none
    has run yet, one does now, so that nothing on the driver runs outside the batch's
    transaction (a COPY there would commit on its own)."""
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    if not driver.is_in_transaction():
        await connection.exec_driver_sql("SELECT 1")
    if not driver.is_in_transaction():  # pragma: no cover - would break exactly-once
        raise RuntimeError("no transaction open on the database connection")
    return driver


async def copy_to_staging(connection: AsyncConnection, table: Table, records: Sequence[tuple[Any, ...]]) -> Any:
    """COPY ``records`` (tuples in the order of ``table``'s ``STAGED_COLUMNS``) into its staging table, a
    temporary table of this database session emptied at every commit (and by a rollback);
    returns the driver connection to go on with in the same transaction.

    Binary COPY is much cheaper for the server than parsing the rows out of one JSON
    document (``insert_rows``), and for the scorer than encoding them into one."""
    driver = await driver_connection(connection)
    staging = staging_name(table)
    columns = STAGED_COLUMNS[table]
    if not connection.info.get(STAGING_READY_KEY):
        await driver.execute(staging_table_ddl(table))
    # A commit or a rollback empties the table; a second use in the same transaction must
    # not write the first one's rows again (counters would be added twice).
    transaction = connection.sync_connection.get_transaction() if connection.sync_connection else None
    staged: tuple[Any, set[str]] | None = connection.info.get(STAGED_KEY)
    if staged is None or staged[0] is not transaction:
        staged = connection.info[STAGED_KEY] = (transaction, set())
    if staging in staged[1]:
        await driver.execute(f"DELETE FROM {staging}")  # noqa: S608 (our names)
    staged[1].add(staging)
    await driver.copy_records_to_table(staging, records=records, columns=list(columns))
    return driver


def staging_table_ddl(table: Table) -> str:
    return (
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging_name(table)} ON COMMIT DELETE ROWS AS "  # noqa: S608 (our names)
        f"SELECT {', '.join(STAGED_COLUMNS[table])} FROM {table.name} WITH NO DATA"
    )


#: In a pooled connection's ``info``: its staging tables were created when it connected.
STAGING_READY_KEY = "vtr_staging_ready"


def create_staging_tables_on_connect(engine: AsyncEngine) -> None:
    """Create the staging tables once per new database connection (outside any transaction,
    so no rolled-back batch can take them away) rather than before every COPY: five round
    trips and catalogue lookups less per batch. Until the schema exists (a first start
    before ``migrate``) each COPY creates its table itself, as without this."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "asyncpg":
        return
    ddl = ";\n".join(staging_table_ddl(table) for table in STAGED_COLUMNS)

    @sa_event.listens_for(engine.sync_engine, "connect")
    def create(dbapi_connection: Any, record: Any) -> None:
        try:
            dbapi_connection.run_async(lambda driver: driver.execute(ddl))
        except Exception:
            log.info("staging tables not created on connect; created on first use", exc_info=True)
            return
        record.info[STAGING_READY_KEY] = True


#: In ``connection.info``: the transaction and the staging tables it has filled.
STAGED_KEY = "vtr_staged_tables"


def staging_name(table: Table) -> str:
    return f"staging_{table.name}"


def chunks(values: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def one_of(connection: AsyncConnection, column: Any, values: Sequence[str]) -> Any:
    """``column IN values``; on PostgreSQL one array parameter (``= ANY``), which is much
    cheaper to compile and send than thousands of parameters."""
    if connection.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(String())))
    return column.in_(values)


def in_groups(connection: AsyncConnection, values: Iterable[str]) -> Iterable[Sequence[str]]:
    ordered = sorted(set(values))
    if connection.dialect.name == "postgresql":
        return [ordered] if ordered else []
    return chunks(ordered)


# -- packages in memory ----------------------------------------------------------------


@dataclass(slots=True)
class PackageRow:
    seller_id: str
    order_id: str
    marketplace: str
    category: str
    tracking_number: str
    carrier_name: str
    carrier: str | None
    service: str | None
    order_amount: str
    order_currency: str
    ship_from_country: str
    buy_shipping: bool
    risk_flags: str
    confirmed_at: datetime
    received_at: datetime
    promised_date: date
    state: str = PackageState.PENDING.value
    reason: str | None = None
    required_tracking: str = TrackingLevel.PARTIAL.value
    probability_micro: int = 0
    first_scan_at: datetime | None = None
    delivery_scan_at: datetime | None = None
    last_scan_at: datetime | None = None
    #: When the clock job next recomputes this package (pending packages only).
    review_at: datetime | None = None
    version: int = 0
    id: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.seller_id, self.order_id)

    @property
    def scope(self) -> tuple[str, str, str]:
        return (self.seller_id, self.marketplace, self.category)

    def facts(self) -> ShipmentFacts:
        return ShipmentFacts(
            marketplace=self.marketplace,
            carrier=self.carrier,
            service=self.service,
            tracking_number=self.tracking_number,
            order_amount=self.order_amount,
            order_currency=self.order_currency,
            ship_from_country=self.ship_from_country,
            buy_shipping=self.buy_shipping,
            risk_flags=tuple(flag for flag in self.risk_flags.split(",") if flag),
        )

    @property
    def lane(self) -> LaneKey:
        return (self.seller_id, self.carrier or "", service_key(self.service), self.ship_from_country, self.marketplace)

    def content(self) -> tuple[Any, ...]:
        """Everything but the bookkeeping (version, id, review_at): equal content means nothing to write."""
        return _CONTENT(self)  # type: ignore[no-any-return]

    def as_values(self) -> dict[str, Any]:
        return dict(zip(_VALUE_NAMES, _VALUES(self), strict=True))

    def clone(self) -> PackageRow:
        # dataclasses.replace is several times slower, and this runs for every package of a batch.
        return PackageRow(*_ALL(self))


#: The columns of ``packages`` in PackageRow's field order (selects use this order too).
PACKAGE_COLUMNS = tuple(f.name for f in fields(PackageRow))
_ALL = attrgetter(*PACKAGE_COLUMNS)
_CONTENT = attrgetter(*(name for name in PACKAGE_COLUMNS if name not in ("version", "id", "review_at")))
_VALUE_NAMES = tuple(name for name in PACKAGE_COLUMNS if name != "id")
_VALUES = attrgetter(*_VALUE_NAMES)


def package_from_confirmation(message: ShipmentConfirmed) -> PackageRow:
    return PackageRow(
        seller_id=message.seller_id,
        order_id=message.order_id,
        marketplace=message.marketplace,
        category=message.category,
        tracking_number=normalise_tracking_number(message.tracking_number),
        carrier_name=message.carrier_name,
        carrier=message.carrier,
        service=message.service,
        order_amount=message.order_value.amount,
        order_currency=message.order_value.currency,
        ship_from_country=message.ship_from_country,
        buy_shipping=message.buy_shipping,
        risk_flags=",".join(sorted(message.risk_flags)),
        confirmed_at=naive_utc(message.confirmed_at),
        received_at=naive_utc(message.received_at),
        promised_date=message.promised_delivery_date,
    )


def package_from_row(row: Any) -> PackageRow:
    """A row selected with ``PACKAGE_COLUMNS`` in that order."""
    return PackageRow(*row)


@dataclass(frozen=True, slots=True)
class Cancellation:
    seller_id: str | None
    order_id: str | None
    cancelled_at: datetime

    def applies_to(self, package: PackageRow) -> bool:
        return (
            (self.seller_id is None or self.seller_id == package.seller_id)
            and (self.order_id is None or self.order_id == package.order_id)
            and self.cancelled_at >= package.confirmed_at
        )


# -- deltas ----------------------------------------------------------------------------

CountKey = tuple[str, str, str, date]
ReasonKey = tuple[str, str, str, date, str, str]


def variance_micro(probability_micro: int) -> int:
    """p(1-p) in millionths, truncated (migration 0003 computes the same in SQL)."""
    return probability_micro * (MICRO - probability_micro) // MICRO


@dataclass
class Deltas:
    counts: dict[CountKey, list[int]]
    reasons: dict[ReasonKey, int]
    scopes: set[tuple[str, str, str]]

    @classmethod
    def empty(cls) -> Deltas:
        return cls(defaultdict(lambda: [0, 0, 0, 0, 0]), defaultdict(int), set())

    def add(self, package: PackageRow, sign: int) -> None:
        state = package.state
        if state == PackageState.CANCELLED:
            return
        count = self.counts[(*package.scope, package.promised_date)]
        if state == PackageState.VALID:
            count[0] += sign
        elif state == PackageState.INVALID:
            count[1] += sign
        else:
            count[2] += sign
            count[3] += sign * package.probability_micro
            count[4] += sign * variance_micro(package.probability_micro)
        if package.reason:
            self.reasons[(*package.scope, package.promised_date, state, package.reason)] += sign

    def change(self, before: PackageRow | None, after: PackageRow) -> None:
        if before is not None:
            self.add(before, -1)
            self.scopes.add(before.scope)
        self.add(after, +1)
        self.scopes.add(after.scope)


# -- evaluation ------------------------------------------------------------------------


#: Bound on the memo of required tracking levels (distinct order values x currencies x marketplaces).
LEVEL_MEMO_SIZE = 50_000


@dataclass
class Evaluator:
    """The policy and the current forecast model, applied to packages."""

    policy: Policy
    #: Replaced by the clock job when the model is refreshed (see :func:`refresh_model`).
    model: Model = field(init=False)
    #: required_tracking per (origin, marketplace, amount, currency): Decimal arithmetic and
    #: FX conversion per package were a large share of a batch's evaluation time.
    _levels: dict[tuple[str, str, str, str], TrackingLevel] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.model = Model(ModelState(), self.policy.forecast)

    def required_tracking(self, facts: ShipmentFacts) -> TrackingLevel:
        key = (facts.ship_from_country, facts.marketplace, facts.order_amount, facts.order_currency)
        level = self._levels.get(key)
        if level is None:
            if len(self._levels) >= LEVEL_MEMO_SIZE:
                self._levels.clear()
            level = self._levels[key] = required_tracking(self.policy, facts)
        return level

    def evaluate(
        self,
        package: PackageRow,
        package_scans: Sequence[Scan],
        package_cancellations: Sequence[Cancellation],
        today: date,
        occurred_before: datetime | None = None,
        now: datetime | None = None,
    ) -> PackageRow:
        """``package`` evaluated, as a new row (``package`` is left as it was)."""
        return self.evaluate_in_place(
            package.clone(), package_scans, package_cancellations, today, occurred_before, now
        )

    def evaluate_in_place(
        self,
        package: PackageRow,
        package_scans: Sequence[Scan],
        package_cancellations: Sequence[Cancellation],
        today: date,
        occurred_before: datetime | None = None,
        now: datetime | None = None,
    ) -> PackageRow:
        """Set ``package``'s evaluation fields and return it; for rows the caller owns (a
        copy per package per batch was a tenth of the evaluation time).

        ``now`` (naive UTC) is the moment the model conditions on; by default noon of ``today``.
        """
        moment = now if now is not None else datetime.combine(today, NOON)
        facts = package.facts()
        level = self.required_tracking(facts)
        summary = summarise_scans(package_scans, occurred_before)
        decision = decide(
            self.policy,
            facts,
            summary,
            promised_date=package.promised_date,
            today=today,
            cancelled=bool(package_cancellations) and any(c.applies_to(package) for c in package_cancellations),
            level=level,
        )
        reason = decision.reason
        probability = decision.probability
        package.review_at = None
        if decision.state is PackageState.PENDING:
            probability, reason = self.model.estimate(
                package.lane,
                full_tracking=level is TrackingLevel.FULL,
                physical_scans=summary.physical_scans,
                first_scan_at=summary.first_scan_at,
                confirmed_at=package.confirmed_at,
                deadline=counted_deadline(package.promised_date),
                now=moment,
                malformed=tracking_number_malformed(self.policy, facts),
                last_scan_at=summary.last_scan_at,
                last_scan_status=summary.last_scan_status,
            )
            if decision.reason is Reason.TRACKING_STOPPED:
                # The aggregator sends nothing more until the number is registered again.
                reason = Reason.TRACKING_STOPPED
                probability *= self.policy.forecast.tracking_stopped_factor
            package.review_at = moment + timedelta(hours=self.policy.forecast.review_hours)
        package.state = decision.state.value
        package.reason = reason.value if reason else None
        package.required_tracking = decision.required.value
        package.probability_micro = round(probability * MICRO)
        package.first_scan_at = summary.first_scan_at
        package.delivery_scan_at = summary.delivery_scan_at
        package.last_scan_at = summary.last_scan_at
        return package


def counted_deadline(promised_date: date) -> datetime:
    """A package first counts on the day after its promised date, with the scans that
    occurred before the end of that day (domain.md section 3)."""
    return datetime.combine(promised_date + timedelta(days=2), time())


NOON = time(12)


#: The hot reads of a batch, sent as they are on the driver connection (no statement to
#: build and compile, no result rows to wrap): one array parameter each.
SCANS_OF_NUMBERS = "SELECT tracking_number, status, occurred_at FROM scans WHERE tracking_number = ANY($1::varchar[])"
CANCELLATIONS_OF_NUMBERS = (
    "SELECT tracking_number, seller_id, order_id, cancelled_at FROM cancellations "
    "WHERE tracking_number = ANY($1::varchar[])"
)
PACKAGES_OF_NUMBERS = f"SELECT {', '.join(PACKAGE_COLUMNS)} FROM packages WHERE tracking_number = ANY($1::varchar[])"  # noqa: S608
PACKAGES_OF_KEYS = (
    f"SELECT {', '.join('p.' + name for name in PACKAGE_COLUMNS)} FROM packages AS p "  # noqa: S608
    "JOIN unnest($1::varchar[], $2::varchar[]) AS k (seller_id, order_id) "
    "ON p.seller_id = k.seller_id AND p.order_id = k.order_id"
)


async def load_scans(connection: AsyncConnection, tracking_numbers: Iterable[str]) -> dict[str, list[Scan]]:
    found: dict[str, list[Scan]] = defaultdict(list)
    if uses_copy(connection):
        numbers = sorted(set(tracking_numbers))
        if numbers:
            driver = await driver_connection(connection)
            for tracking_number, status, occurred_at in await driver.fetch(SCANS_OF_NUMBERS, numbers):
                found[tracking_number].append(Scan(status, occurred_at))
        return found
    for chunk in in_groups(connection, tracking_numbers):
        result = await connection.execute(
            select(scans.c.tracking_number, scans.c.status, scans.c.occurred_at).where(
                one_of(connection, scans.c.tracking_number, chunk)
            )
        )
        for tracking_number, status, occurred_at in result.all():
            found[tracking_number].append(Scan(status, occurred_at))
    return found


async def load_cancellations(
    connection: AsyncConnection, tracking_numbers: Iterable[str]
) -> dict[str, list[Cancellation]]:
    found: dict[str, list[Cancellation]] = defaultdict(list)
    if uses_copy(connection):
        numbers = sorted(set(tracking_numbers))
        if numbers:
            driver = await driver_connection(connection)
            for tracking_number, seller_id, order_id, cancelled_at in await driver.fetch(
                CANCELLATIONS_OF_NUMBERS, numbers
            ):
                found[tracking_number].append(Cancellation(seller_id, order_id, cancelled_at))
        return found
    for chunk in in_groups(connection, tracking_numbers):
        result = await connection.execute(
            select(
                cancellations.c.tracking_number,
                cancellations.c.seller_id,
                cancellations.c.order_id,
                cancellations.c.cancelled_at,
            ).where(one_of(connection, cancellations.c.tracking_number, chunk))
        )
        for tracking_number, seller_id, order_id, cancelled_at in result:
            found[tracking_number].append(Cancellation(seller_id, order_id, cancelled_at))
    return found


async def reevaluate(
    connection: AsyncConnection,
    evaluator: Evaluator,
    changes: Sequence[tuple[PackageRow | None, PackageRow]],
    today: date,
    now: datetime | None = None,
    *,
    rewrite: bool = False,
) -> int:
    """Evaluate ``(before, after)`` pairs and write whatever changed; returns packages written.

    Each ``after`` is evaluated in place: callers pass a row of their own (a clone or a new one).
    ``rewrite`` writes unchanged packages too (the clock job's reviews move ``review_at``).
    """
    if not changes:
        return 0
    tracking_numbers = {after.tracking_number for _, after in changes}
    found_scans = await load_scans(connection, tracking_numbers)
    found_cancellations = await load_cancellations(connection, tracking_numbers)
    evaluated = EvaluatedPackages([], Deltas.empty())
    evaluated.add(evaluator, changes, found_scans, found_cancellations, today, now, rewrite=rewrite)
    await write_evaluated(connection, evaluated)
    return len(evaluated.writes)


@dataclass
class EvaluatedPackages:
    """Packages evaluated for writing, and the counter deltas they make."""

    writes: list[PackageRow]
    deltas: Deltas

    def add(
        self,
        evaluator: Evaluator,
        changes: Iterable[tuple[PackageRow | None, PackageRow]],
        found_scans: Mapping[str, Sequence[Scan]],
        found_cancellations: Mapping[str, Sequence[Cancellation]],
        today: date,
        now: datetime | None,
        *,
        rewrite: bool = False,
    ) -> None:
        """Evaluate ``(before, after)`` pairs (``after`` in place) and keep what changed."""
        for before, after in changes:
            evaluated = evaluator.evaluate_in_place(
                after,
                found_scans.get(after.tracking_number, ()),
                found_cancellations.get(after.tracking_number, ()),
                today,
                now=now,
            )
            if before is not None and before.content() == evaluated.content() and not rewrite:
                continue
            evaluated.version = (before.version if before is not None else 0) + 1
            self.deltas.change(before, evaluated)
            self.writes.append(evaluated)


async def write_evaluated(connection: AsyncConnection, evaluated: EvaluatedPackages) -> None:
    """Write the packages (version-checked) and add their counter deltas."""
    if uses_copy(connection):
        # Build the counter rows while the database writes the packages.
        _, staged = await overlapped(
            write_packages(connection, evaluated.writes), lambda: delta_records(evaluated.deltas)
        )
        await copy_deltas(connection, staged)
        return
    _, statements = await overlapped(
        write_packages(connection, evaluated.writes), lambda: delta_statements(connection, evaluated.deltas)
    )
    for statement, parameters in statements:
        await execute_rows(connection, statement, parameters)


async def write_packages(connection: AsyncConnection, rows: Sequence[PackageRow]) -> None:
    if not rows:
        return
    ordered = sorted(rows, key=lambda row: row.key)
    if uses_copy(connection):
        driver = await copy_to_staging(connection, packages, [_VALUES(row) for row in ordered])
        written = int(await driver.fetchval(PACKAGES_UPSERT))
    else:
        statement, parameters = insert_rows(connection, packages, [row.as_values() for row in ordered])
        updatable = [name for name in PACKAGE_COLUMNS if name not in ("id", "seller_id", "order_id")]
        statement = statement.on_conflict_do_update(
            index_elements=[packages.c.seller_id, packages.c.order_id],
            set_={name: statement.excluded[name] for name in updatable},
            where=packages.c.version == statement.excluded.version - 1,
        ).returning(packages.c.id)
        written = len((await execute_rows(connection, statement, parameters)).all())
    if written != len(ordered):
        raise ConcurrentUpdate(f"{len(ordered) - written} package(s) changed concurrently")


#: The version-checked upsert of the staged packages; counts the rows it wrote (a package
#: whose version moved under this transaction is not written, hence ConcurrentUpdate).
#: In key order (bytewise, as Python sorts) so that concurrent writers lock rows in the same order.
PACKAGES_UPSERT = f"""
WITH written AS (
    INSERT INTO packages AS p ({", ".join(_VALUE_NAMES)})
    SELECT {", ".join(_VALUE_NAMES)} FROM {staging_name(packages)}
    ORDER BY seller_id COLLATE "C", order_id COLLATE "C"
    ON CONFLICT (seller_id, order_id) DO UPDATE SET
    {", ".join(f"{name} = excluded.{name}" for name in _VALUE_NAMES if name not in ("seller_id", "order_id"))}
    WHERE p.version = excluded.version - 1
    RETURNING 1
)
SELECT count(*) FROM written
"""  # noqa: S608 (the names of our own columns)


def delta_statements(connection: AsyncConnection, deltas: Deltas) -> list[tuple[Any, Any]]:
    """The statements (and their parameters) that apply ``deltas``: pure CPU work, so that
    :func:`reevaluate` can build them while the database writes the packages."""
    statements: list[tuple[Any, Any]] = []
    records = delta_records(deltas)
    count_rows = [dict(zip(COUNT_COLUMNS, row, strict=True)) for row in records.counts]
    if count_rows:
        statement, parameters = insert_rows(connection, daily_counts, count_rows)
        statement = statement.on_conflict_do_update(
            index_elements=list(daily_counts.primary_key.columns),
            set_={name: daily_counts.c[name] + statement.excluded[name] for name in _COUNTED},
        )
        statements.append((statement, parameters))
    reason_rows = [dict(zip(REASON_COLUMNS, row, strict=True)) for row in records.reasons]
    if reason_rows:
        statement, parameters = insert_rows(connection, daily_reasons, reason_rows)
        statement = statement.on_conflict_do_update(
            index_elements=list(daily_reasons.primary_key.columns),
            set_={"count": daily_reasons.c.count + statement.excluded["count"]},
        )
        statements.append((statement, parameters))
    if records.scopes:
        statements.append(mark_changed_statement(connection, records.scopes))
    return statements


@dataclass(slots=True)
class DeltaRecords:
    """``Deltas`` as the rows COPY sends (see :func:`copy_deltas`), sorted by key."""

    counts: list[tuple[Any, ...]]
    reasons: list[tuple[Any, ...]]
    scopes: list[tuple[str, str, str]]


COUNT_COLUMNS = (
    "seller_id",
    "marketplace",
    "category",
    "promised_date",
    "valid",
    "invalid",
    "pending",
    "expected_valid_micro",
    "variance_micro",
)
REASON_COLUMNS = ("seller_id", "marketplace", "category", "promised_date", "state", "reason", "count")
SCOPE_COLUMNS = ("seller_id", "marketplace", "category")


def delta_records(deltas: Deltas) -> DeltaRecords:
    """What :func:`delta_statements` writes, as COPY rows: pure CPU work."""
    counts = [(*key, *value) for key, value in sorted(deltas.counts.items()) if any(value)]
    reasons = [(*key, value) for key, value in sorted(deltas.reasons.items()) if value]
    scopes = sorted(deltas.scopes) if counts or reasons else []
    return DeltaRecords(counts, reasons, scopes)


async def copy_deltas(connection: AsyncConnection, staged: DeltaRecords) -> None:
    """Add the counter deltas and mark the outbox, as :func:`delta_statements` does, through
    COPY into staging tables, then one upsert per table (in key order, as before), sent
    together: one round trip."""
    upserts: list[str] = []
    driver: Any = None
    if staged.counts:
        driver = await copy_to_staging(connection, daily_counts, staged.counts)
        upserts.append(COUNTS_UPSERT)
    if staged.reasons:
        driver = await copy_to_staging(connection, daily_reasons, staged.reasons)
        upserts.append(REASONS_UPSERT)
    if staged.scopes:
        driver = await copy_to_staging(connection, outbox, staged.scopes)
        upserts.append(OUTBOX_MARK)
    if upserts:
        await driver.execute(";\n".join(upserts))


_SCOPE_ORDER = 'seller_id COLLATE "C", marketplace COLLATE "C", category COLLATE "C"'
_COUNTED = ("valid", "invalid", "pending", "expected_valid_micro", "variance_micro")
COUNTS_UPSERT = f"""
INSERT INTO daily_counts AS d ({", ".join(COUNT_COLUMNS)})
SELECT {", ".join(COUNT_COLUMNS)} FROM {staging_name(daily_counts)} ORDER BY {_SCOPE_ORDER}, promised_date
ON CONFLICT (seller_id, marketplace, category, promised_date) DO UPDATE SET
{", ".join(f"{name} = d.{name} + excluded.{name}" for name in _COUNTED)}
"""  # noqa: S608 (the names of our own columns)
REASONS_UPSERT = f"""
INSERT INTO daily_reasons AS d ({", ".join(REASON_COLUMNS)})
SELECT {", ".join(REASON_COLUMNS)} FROM {staging_name(daily_reasons)}
ORDER BY {_SCOPE_ORDER}, promised_date, state COLLATE "C", reason COLLATE "C"
ON CONFLICT (seller_id, marketplace, category, promised_date, state, reason)
DO UPDATE SET count = d.count + excluded.count
"""  # noqa: S608 (the names of our own columns)
#: The score_versions triggers fire on it as on the json_to_recordset upsert.
OUTBOX_MARK = f"""
INSERT INTO score_outbox AS o (seller_id, marketplace, category, version)
SELECT seller_id, marketplace, category, 1 FROM {staging_name(outbox)} ORDER BY {_SCOPE_ORDER}
ON CONFLICT (seller_id, marketplace, category) DO UPDATE SET version = o.version + 1
"""  # noqa: S608 (the names of our own columns)


async def mark_changed(connection: AsyncConnection, scopes: Sequence[tuple[str, str, str]]) -> None:
    if not scopes:
        return
    await execute_rows(connection, *mark_changed_statement(connection, scopes))


def mark_changed_statement(connection: AsyncConnection, scopes: Sequence[tuple[str, str, str]]) -> tuple[Any, Any]:
    statement, parameters = insert_rows(
        connection, outbox, [{"seller_id": s, "marketplace": m, "category": c, "version": 1} for s, m, c in scopes]
    )
    statement = statement.on_conflict_do_update(
        index_elements=list(outbox.primary_key.columns), set_={"version": outbox.c.version + 1}
    )
    return statement, parameters


# -- applying a batch of input records -------------------------------------------------


@dataclass
class DecodedBatch:
    events: list[TrackingEvent]
    confirmations: list[ShipmentConfirmed]
    cancellations: list[ShipmentCancelled]
    newest_received_at: datetime | None = None
    #: Per event, in ``events`` order: its ``scans`` row.
    scan_rows: list[dict[str, Any]] = field(default_factory=list)
    #: Per confirmation, in ``confirmations`` order: its unevaluated package row.
    confirmation_rows: list[PackageRow] = field(default_factory=list)
    #: Records that can never be applied, and why (logged and counted by :func:`report_applied`).
    undecodable: list[tuple[ConsumerRecord[bytes, bytes], ContractError | None]] = field(default_factory=list)


@dataclass(slots=True)
class PreparedRecord:
    """What one input record decodes to, worked out ahead of its batch (see
    :func:`prepare_record`): a pure function of the record's bytes."""

    value: bytes | None
    message: TrackingEvent | ShipmentConfirmed | ShipmentCancelled | None = None
    #: Why the record can never be applied (counted and logged when its batch is applied).
    error: ContractError | None = None
    #: The ``scans`` row of a tracking event; the unevaluated package of a confirmation.
    row: dict[str, Any] | PackageRow | None = None


#: Records decoded ahead of their batch, by (topic, partition, offset).
PreparedRecords = dict[tuple[str, int, int], PreparedRecord]


#: Longest accepted value per field: a record that does not fit the columns is rejected as
#: invalid instead of failing its batch forever.
FIELD_LIMITS: dict[str, int] = {
    "event_id": 64,
    "tracking_number": 128,
    "seller_id": 128,
    "order_id": 128,
    "category": 200,
    "carrier_name": 200,
    "carrier": 64,
    "service": 200,
}
AMOUNT_LIMIT = 32


#: Text fields of each message that the scorer stores.
STORED_TEXT: dict[type, tuple[str, ...]] = {
    TrackingEvent: ("event_id", "tracking_number", "source"),
    ShipmentConfirmed: ("seller_id", "order_id", "category", "carrier_name", "carrier", "service", "tracking_number"),
    ShipmentCancelled: ("tracking_number", "seller_id", "order_id"),
}
MIN_YEAR, MAX_YEAR = 1900, 9000
#: Time fields converted to naive UTC for storage.
STORED_TIMES: dict[type, tuple[str, ...]] = {
    TrackingEvent: ("occurred_at", "received_at"),
    ShipmentConfirmed: ("confirmed_at", "received_at"),
    ShipmentCancelled: ("cancelled_at", "received_at"),
}


def check_storable(message: TrackingEvent | ShipmentConfirmed | ShipmentCancelled) -> None:
    """Refuse what the database would refuse (a failing batch would be retried forever)."""
    for name in STORED_TEXT[type(message)]:
        value = getattr(message, name)
        if value is None:
            continue
        limit = FIELD_LIMITS.get(name)
        if limit is not None and len(value) > limit:
            raise ContractError(f"{name} longer than {limit} characters")
        if "\x00" in value:
            raise ContractError(f"{name} contains a NUL character")
    for name in STORED_TIMES[type(message)]:
        # Converting to UTC overflows within a day of year 1 or 9999.
        if not MIN_YEAR <= getattr(message, name).year <= MAX_YEAR:
            raise ContractError(f"{name} is not between the years {MIN_YEAR} and {MAX_YEAR}")
    if isinstance(message, ShipmentConfirmed) and len(message.order_value.amount) > AMOUNT_LIMIT:
        raise ContractError(f"order_value.amount longer than {AMOUNT_LIMIT} characters")


def prepare_record(record: ConsumerRecord[bytes, bytes]) -> PreparedRecord:
    """Decode and check one record and build the row it becomes: the CPU work of a record
    that does not depend on the database, so the consumer can do it for the next batch
    while this one waits for PostgreSQL."""
    prepared = PreparedRecord(record.value)
    try:
        if record.value is None:
            raise ContractError("empty record value")
        if record.topic == TRACKING_EVENTS or record.topic.endswith(TRACKING_EVENTS):
            event = TRACKING_EVENT_CODEC.decode(record.value)
            check_storable(event)
            prepared.message, prepared.row = event, scan_row(event)
        elif record.topic == SHIPMENTS or record.topic.endswith(SHIPMENTS):
            message = SHIPMENT_CODEC.decode(record.value)
            check_storable(message)
            prepared.message = message
            if isinstance(message, ShipmentConfirmed):
                prepared.row = package_from_confirmation(message)
        else:
            raise ContractError(f"unexpected topic {record.topic}")
    except ContractError as error:
        prepared.error = error
    return prepared


def decode_records(
    records: Sequence[ConsumerRecord[bytes, bytes]], prepared: PreparedRecords | None = None
) -> DecodedBatch:
    """Decode a batch, taking each record's decoding from ``prepared`` when it was worked
    out ahead (entries are removed as they are used: rows are mutated by the batch, and a
    batch that is retried decodes its records afresh)."""
    batch = DecodedBatch([], [], [])
    for record in records:
        ready = prepared.pop((record.topic, record.partition, record.offset), None) if prepared else None
        # The same bytes, or the offset now holds another record (a re-created topic).
        if ready is None or ready.value != record.value:
            ready = prepare_record(record)
        message = ready.message
        if ready.error is not None or message is None:
            # A record that can never be applied must not block the partition: skip it.
            batch.undecodable.append((record, ready.error))
            continue
        if isinstance(message, TrackingEvent):
            batch.events.append(message)
            batch.scan_rows.append(ready.row)  # type: ignore[arg-type]
        elif isinstance(message, ShipmentConfirmed):
            batch.confirmations.append(message)
            batch.confirmation_rows.append(ready.row)  # type: ignore[arg-type]
        else:
            batch.cancellations.append(message)
        received_at = message.received_at
        if batch.newest_received_at is None or received_at > batch.newest_received_at:
            batch.newest_received_at = received_at
    return batch


def scan_row(event: TrackingEvent) -> dict[str, Any]:
    """The ``scans`` row of a tracking event."""
    return {
        "event_id": event.event_id,
        "tracking_number": normalise_tracking_number(event.tracking_number),
        "status": TRACKING_STOPPED_STATUS if event.notice == NOTICE_TRACKING_STOPPED else event.status.value,
        "occurred_at": naive_utc(event.occurred_at),
        "received_at": naive_utc(event.received_at),
        "source": event.source[:64],
        "carrier_code": event.carrier_code[:64],
        "last_mile_carrier": event.last_mile_carrier[:64],
        "last_mile_tracking_number": event.last_mile_tracking_number[:128],
    }


async def store_scans(connection: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
    """Store new scans (rows of distinct events, in event id order); returns how many were
    not stored already."""
    if not rows:
        return 0
    if uses_copy(connection):
        driver = await copy_to_staging(connection, scans, [tuple(row.values()) for row in rows])
        return int(await driver.fetchval(SCANS_INSERT))
    statement, parameters = insert_rows(connection, scans, list(rows))
    statement = statement.on_conflict_do_nothing().returning(scans.c.event_id)
    return len((await execute_rows(connection, statement, parameters)).all())


#: The columns of a ``scans`` row, in :func:`scan_row`'s order.
SCAN_COLUMNS = (
    "event_id",
    "tracking_number",
    "status",
    "occurred_at",
    "received_at",
    "source",
    "carrier_code",
    "last_mile_carrier",
    "last_mile_tracking_number",
)
#: Stores the staged scans not stored yet (by event id, in that order); returns how many.
SCANS_INSERT = f"""
WITH written AS (
    INSERT INTO scans ({", ".join(SCAN_COLUMNS)})
    SELECT {", ".join(SCAN_COLUMNS)} FROM {staging_name(scans)} ORDER BY event_id COLLATE "C"
    ON CONFLICT (event_id) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM written
"""  # noqa: S608 (the names of our own columns)


def cancel_key(message: ShipmentCancelled) -> str:
    return "|".join(
        (
            normalise_tracking_number(message.tracking_number),
            message.seller_id or "",
            message.order_id or "",
            naive_utc(message.cancelled_at).isoformat(),
        )
    )


def cancellation_row(key: str, message: ShipmentCancelled) -> dict[str, Any]:
    return {
        "cancel_key": key,
        "tracking_number": normalise_tracking_number(message.tracking_number),
        "seller_id": message.seller_id,
        "order_id": message.order_id,
        "cancelled_at": naive_utc(message.cancelled_at),
    }


async def store_cancellations(connection: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
    """Store new cancellations (distinct, in ``cancel_key`` order); returns how many were not
    stored already."""
    if not rows:
        return 0
    statement, parameters = insert_rows(connection, cancellations, list(rows))
    statement = statement.on_conflict_do_nothing().returning(cancellations.c.cancel_key)
    return len((await execute_rows(connection, statement, parameters)).all())


async def stored_keys(connection: AsyncConnection, column: Any, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` (values of a table's primary key ``column``) are stored."""
    found: set[str] = set()
    if not keys:
        return found
    if uses_copy(connection):
        driver = await driver_connection(connection)
        query = f"SELECT {column.name} FROM {column.table.name} WHERE {column.name} = ANY($1::varchar[])"  # noqa: S608
        return {row[0] for row in await driver.fetch(query, sorted(keys))}
    for chunk in in_groups(connection, keys):
        found.update(row[0] for row in await connection.execute(select(column).where(column.in_(chunk))))
    return found


async def load_packages(
    connection: AsyncConnection, tracking_numbers: Iterable[str], order_keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], PackageRow]:
    found: dict[tuple[str, str], PackageRow] = {}
    if uses_copy(connection):
        driver = await driver_connection(connection)
        numbers = sorted(set(tracking_numbers))
        if numbers:
            for row in await driver.fetch(PACKAGES_OF_NUMBERS, numbers):
                package = PackageRow(*row)
                found[package.key] = package
        pairs = sorted(set(order_keys) - set(found))
        if pairs:
            for row in await driver.fetch(PACKAGES_OF_KEYS, [p[0] for p in pairs], [p[1] for p in pairs]):
                package = PackageRow(*row)
                found[package.key] = package
        return found
    columns = [packages.c[name] for name in PACKAGE_COLUMNS]
    for chunk in in_groups(connection, tracking_numbers):
        query = select(*columns).where(one_of(connection, packages.c.tracking_number, chunk))
        for row in (await connection.execute(query)).all():
            package = package_from_row(row)
            found[package.key] = package
    wanted = set(order_keys) - set(found)
    if not wanted:
        return found
    if connection.dialect.name == "postgresql":
        # Join the (seller_id, order_id) pairs as two arrays: one index probe per pair.
        pairs = sorted(wanted)
        keys = (
            select(
                func.unnest(bindparam("sellers", [p[0] for p in pairs], type_=postgresql.ARRAY(String()))).label("s"),
                func.unnest(bindparam("orders", [p[1] for p in pairs], type_=postgresql.ARRAY(String()))).label("o"),
            )
        ).subquery()
        query = select(*columns).join(keys, and_(packages.c.seller_id == keys.c.s, packages.c.order_id == keys.c.o))
        queries = [query]
    else:
        sellers = sorted({seller_id for seller_id, _ in wanted})
        queries = [
            select(*columns).where(packages.c.seller_id.in_(sellers), packages.c.order_id.in_(chunk))
            for chunk in chunks(sorted({order_id for _, order_id in wanted}))
        ]
    for query in queries:
        for row in await connection.execute(query):
            if (row.seller_id, row.order_id) in wanted:
                package = package_from_row(row)
                found[package.key] = package
    return found


def settled(package: PackageRow, new_scans: Sequence[TrackingEvent] = ()) -> bool:
    """More scans cannot change this package: valid stays valid (validity only grows with
    scans), cancelled stays cancelled, and a structural reason does not depend on scans.

    A valid package still takes a scan that moves one of its milestones (an earlier first
    scan, or its first delivery scan): the forecast model learns from them, partial-tracking
    parcels included, which is how a service that never scans delivery shows in the data.
    """
    if package.state == PackageState.CANCELLED or package.reason in STRUCTURAL_REASONS:
        return True
    if package.state != PackageState.VALID:
        return False
    first, delivery = package.first_scan_at, package.delivery_scan_at
    for event in new_scans:
        if event.status not in PHYSICAL_SCAN_STATUSES:
            continue
        moment = naive_utc(event.occurred_at)
        if first is None or moment < first:
            return False
        if event.status in DELIVERY_SCAN_STATUSES and (delivery is None or moment < delivery):
            return False
    return True


def _newer(package: PackageRow, than: PackageRow) -> bool:
    return (package.confirmed_at, package.received_at) > (than.confirmed_at, than.received_at)


def newest_confirmations(rows: Iterable[PackageRow]) -> dict[tuple[str, str], PackageRow]:
    """The newest confirmation of each order in a batch (as unevaluated package rows; their
    times are naive UTC, so they order as the messages' aware times do)."""
    latest: dict[tuple[str, str], PackageRow] = {}
    for row in rows:
        key = (row.seller_id, row.order_id)
        current = latest.get(key)
        if current is None or _newer(row, current):
            latest[key] = row
    return latest


class StalePlan(RuntimeError):
    """A batch plan's scans or cancellations were stored by another writer after it read them."""


@dataclass
class BatchPlan:
    """What applying a batch writes, worked out from the stored rows it read (see
    :func:`plan_records`), and what :func:`write_plan` checks so that it is still right
    when written in a later transaction than the one that read (a plan made ahead)."""

    batch: DecodedBatch
    #: Scans and cancellations not stored yet, distinct, in key order.
    scan_rows: list[dict[str, Any]]
    cancellation_rows: list[dict[str, Any]]
    evaluated: EvaluatedPackages
    applied_confirmations: int
    #: Every tracking number and order whose stored rows the plan read.
    tracking_numbers: set[str]
    order_keys: set[tuple[str, str]]

    def touches(self) -> tuple[set[str], set[tuple[str, str]]]:
        """The tracking numbers and orders whose stored rows writing this plan changes."""
        numbers = {row["tracking_number"] for row in self.scan_rows}
        numbers.update(row["tracking_number"] for row in self.cancellation_rows)
        numbers.update(package.tracking_number for package in self.evaluated.writes)
        return numbers, {package.key for package in self.evaluated.writes}


#: Packages evaluated between two yields when a plan is made ahead (about half a millisecond
#: of CPU: the batch being written meanwhile waits for the event loop at every statement).
PLAN_SLICE = 20


async def plan_records(
    connection: AsyncConnection,
    evaluator: Evaluator,
    batch: DecodedBatch,
    today: date,
    now: datetime | None = None,
    pause: Callable[[], Awaitable[None]] | None = None,
) -> BatchPlan:
    """Read what ``batch`` depends on and evaluate it, writing nothing.

    A scan or cancellation is new when its key is not stored (as the insert's ``ON
    CONFLICT DO NOTHING`` decides); a package is re-evaluated when it gets a new scan or
    cancellation (unless settled) or a newer confirmation, with its stored scans and
    cancellations plus the batch's new ones. ``pause`` is awaited between slices of the
    evaluation (a plan made ahead yields to the batch being written meanwhile).
    """
    unique_scans = {row["event_id"]: row for row in batch.scan_rows}
    stored_events = await stored_keys(connection, scans.c.event_id, list(unique_scans))
    scan_rows = [unique_scans[event_id] for event_id in sorted(unique_scans) if event_id not in stored_events]
    unique_cancellations = {cancel_key(message): message for message in batch.cancellations}
    stored_cancellations = await stored_keys(connection, cancellations.c.cancel_key, list(unique_cancellations))
    cancellation_rows = [
        cancellation_row(key, message)
        for key, message in sorted(unique_cancellations.items())
        if key not in stored_cancellations
    ]
    scanned = {row["tracking_number"] for row in scan_rows}
    cancelled = {row["tracking_number"] for row in cancellation_rows}
    latest = newest_confirmations(batch.confirmation_rows)
    existing = await load_packages(connection, scanned | cancelled, latest)
    events_by_number: dict[str, list[TrackingEvent]] = defaultdict(list)
    for event in batch.events:
        events_by_number[normalise_tracking_number(event.tracking_number)].append(event)

    changes: dict[tuple[str, str], tuple[PackageRow | None, PackageRow]] = {
        key: (package, package.clone())
        for key, package in existing.items()
        if package.tracking_number in cancelled
        or (
            package.tracking_number in scanned
            and not settled(package, events_by_number.get(package.tracking_number, ()))
        )
    }
    applied_confirmations = 0
    for key, fresh in latest.items():
        before = existing.get(key)
        if before is not None and not _newer(fresh, before):
            continue
        applied_confirmations += 1
        if before is not None:
            # Keep the evaluation fields; they are recomputed below and compared with the old ones.
            fresh.version, fresh.id = before.version, before.id
        changes[key] = (before, fresh)

    numbers = {after.tracking_number for _, after in changes.values()}
    found_scans = await load_scans(connection, numbers)
    found_cancellations = await load_cancellations(connection, numbers)
    for row in scan_rows:
        if row["tracking_number"] in numbers:
            found_scans[row["tracking_number"]].append(Scan(row["status"], row["occurred_at"]))
    for row in cancellation_rows:
        if row["tracking_number"] in numbers:
            found_cancellations[row["tracking_number"]].append(
                Cancellation(row["seller_id"], row["order_id"], row["cancelled_at"])
            )
    evaluated = EvaluatedPackages([], Deltas.empty())
    pairs = list(changes.values())
    step = PLAN_SLICE if pause is not None else max(1, len(pairs))
    for start in range(0, len(pairs), step):
        if start and pause is not None:
            await pause()
        evaluated.add(evaluator, pairs[start : start + step], found_scans, found_cancellations, today, now)
    read_numbers = numbers | scanned | cancelled | set(events_by_number)
    read_numbers.update(row.tracking_number for row in batch.confirmation_rows)
    return BatchPlan(
        batch=batch,
        scan_rows=scan_rows,
        cancellation_rows=cancellation_rows,
        evaluated=evaluated,
        applied_confirmations=applied_confirmations,
        tracking_numbers=read_numbers,
        order_keys=set(latest) | set(existing),
    )


async def write_plan(connection: AsyncConnection, plan: BatchPlan) -> None:
    """Write a batch plan.

    Raises :class:`StalePlan` when some of its scans or cancellations were stored since it
    read them, and :class:`ConcurrentUpdate` when one of its packages was written: either
    way the caller rolls back what this wrote and plans again.
    """
    stored = await store_scans(connection, plan.scan_rows)
    if stored != len(plan.scan_rows):
        raise StalePlan(f"{len(plan.scan_rows) - stored} scan(s) stored since the plan read them")
    stored = await store_cancellations(connection, plan.cancellation_rows)
    if stored != len(plan.cancellation_rows):
        raise StalePlan(f"{len(plan.cancellation_rows) - stored} cancellation(s) stored since the plan read them")
    await write_evaluated(connection, plan.evaluated)


def report_applied(plan: BatchPlan) -> None:
    """Count a written plan's records (once its writes went through) and log what was skipped."""
    batch = plan.batch
    for record, error in batch.undecodable:
        metrics.RECORDS.labels(record.topic, "invalid").inc()
        log.warning(
            "skipping undecodable record",
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset, "error": str(error)},
        )
    metrics.RECORDS.labels(TRACKING_EVENTS, "applied").inc(len(plan.scan_rows))
    metrics.RECORDS.labels(TRACKING_EVENTS, "duplicate").inc(len(batch.events) - len(plan.scan_rows))
    applied_shipments = len(plan.cancellation_rows) + plan.applied_confirmations
    metrics.RECORDS.labels(SHIPMENTS, "applied").inc(applied_shipments)
    metrics.RECORDS.labels(SHIPMENTS, "duplicate").inc(
        len(batch.cancellations) + len(batch.confirmations) - applied_shipments
    )
    if batch.newest_received_at is not None:
        metrics.LAST_EVENT.set(batch.newest_received_at.timestamp())


async def apply_records(
    connection: AsyncConnection,
    evaluator: Evaluator,
    records: Sequence[ConsumerRecord[bytes, bytes]],
    today: date,
    now: datetime | None = None,
    prepared: PreparedRecords | None = None,
) -> None:
    """Apply one batch of shipment and tracking records (any order, any mix, redeliveries
    included) in ``connection``'s transaction; ``prepared``: records decoded ahead (see
    :func:`decode_records`)."""
    plan = await plan_records(connection, evaluator, decode_records(records, prepared), today, now)
    await write_plan(connection, plan)
    report_applied(plan)


# -- clock-driven work -----------------------------------------------------------------


async def _reevaluate_pending(
    connection: AsyncConnection,
    evaluator: Evaluator,
    today: date,
    limit: int,
    now: datetime | None,
    *conditions: Any,
) -> int:
    """Re-evaluate up to ``limit`` pending packages matching ``conditions`` (clock-driven
    work); each one is written, so its ``review_at`` moves on."""
    columns = [packages.c[name] for name in PACKAGE_COLUMNS]
    query = (
        select(*columns)
        # Written out, not a parameter: the partial indexes on pending packages (migration
        # 0006) then serve the query whatever plan the server keeps for the prepared statement.
        .where(packages.c.state == literal_column(f"'{PackageState.PENDING.value}'"), *conditions)
        .order_by(packages.c.id)
        .limit(limit)
    )
    if connection.dialect.name == "postgresql":
        # Another scorer instance's clock job takes other rows instead of waiting for these.
        query = query.with_for_update(skip_locked=True)
    rows = [package_from_row(row) for row in await connection.execute(query)]
    return await reevaluate(connection, evaluator, [(row, row.clone()) for row in rows], today, now, rewrite=True)


async def expire_pending(
    connection: AsyncConnection, evaluator: Evaluator, today: date, limit: int, now: datetime | None = None
) -> int:
    """Re-evaluate up to ``limit`` pending packages whose promised date has passed."""
    return await _reevaluate_pending(connection, evaluator, today, limit, now, packages.c.promised_date < today)


async def review_due(
    connection: AsyncConnection, evaluator: Evaluator, today: date, limit: int, now: datetime | None = None
) -> int:
    """Recompute up to ``limit`` upcoming pending packages whose review is due: time alone
    moves their probability (a first scan that should have come by now), and so does a
    refreshed model (:func:`refresh_model` makes the affected packages due at once)."""
    moment = now if now is not None else datetime.combine(today, NOON)
    return await _reevaluate_pending(
        connection,
        evaluator,
        today,
        limit,
        moment,
        packages.c.promised_date >= today,
        or_(packages.c.review_at.is_(None), packages.c.review_at <= moment),
    )


# -- the forecast model ----------------------------------------------------------------

MODEL_STATE_NAME = "forecast"


async def build_model_state(connection: AsyncConnection, settings: ModelSettings, now: datetime) -> ModelState:
    """The model's state from the packages confirmed in the learning period (milestone times,
    the silences between their scans, the carrier health), as of ``now`` (naive UTC). The
    arithmetic runs in a worker thread: on a large history it takes seconds, during which
    the event loop keeps consuming."""
    c = packages.c
    since = now - timedelta(days=settings.history_days)
    package_rows = (
        await connection.execute(
            select(
                c.seller_id,
                c.carrier,
                c.service,
                c.ship_from_country,
                c.marketplace,
                c.confirmed_at,
                c.first_scan_at,
                c.delivery_scan_at,
                c.last_scan_at,
                c.state,
                c.reason,
                c.tracking_number,
                c.promised_date,
            ).where(c.confirmed_at >= since, c.carrier.is_not(None), c.state != PackageState.CANCELLED.value)
        )
    ).all()
    silence_since = now - timedelta(days=settings.silence_history_days)
    scan_rows = (
        await connection.execute(
            select(scans.c.tracking_number, scans.c.status, scans.c.occurred_at).where(
                scans.c.tracking_number.in_(select(c.tracking_number).where(c.confirmed_at >= silence_since)),
                scans.c.status.in_(sorted(PHYSICAL_SCAN_STATUSES)),
                scans.c.occurred_at <= now,
            )
        )
    ).all()
    return await asyncio.to_thread(model_state_from_rows, package_rows, scan_rows, now, settings)


def model_state_from_rows(
    package_rows: Sequence[Any], scan_rows: Sequence[Any], now: datetime, settings: ModelSettings
) -> ModelState:
    """:func:`build_model_state`'s arithmetic, on the rows it read."""
    state = ModelState(computed_at=now, recent_hours=settings.recent_hours)
    scan_times: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    silence_since = now - timedelta(days=settings.silence_history_days)
    #: Scanned parcels recent enough to learn silences from:
    #: tracking number -> (lane, first scan, delivery scan, deadline).
    scanned: dict[str, tuple[LaneKey, datetime, datetime | None, datetime]] = {}
    complete_from = selected_from((row[0], row[12], row[7] is not None) for row in package_rows)
    for (
        seller_id,
        carrier,
        service,
        origin,
        marketplace,
        confirmed_at,
        first_scan_at,
        delivery_scan_at,
        last_scan_at,
        package_state,
        reason,
        tracking_number,
        promised_date,
    ) in package_rows:
        if reason in STRUCTURAL_REASONS or (package_state == PackageState.VALID.value and first_scan_at is None):
            continue  # their scans are not followed (or Buy Shipping counted them valid)
        lane: LaneKey = (seller_id, carrier, service_key(service), origin, marketplace)
        deadline = counted_deadline(promised_date)
        if first_scan_at is not None and first_scan_at <= now and confirmed_at >= silence_since:
            scanned.setdefault(tracking_number, (lane, first_scan_at, delivery_scan_at, deadline))
        first_complete = complete_from.get(seller_id)
        for observation in observations_of(
            lane,
            confirmed_at,
            first_scan_at,
            delivery_scan_at,
            now,
            settings,
            deadline,
            selected_waiting=first_complete is not None and promised_date < first_complete,
        ):
            state.add(observation)
        # Every carrier with a scan gets a health entry (its newest scan, however old); the
        # usual rate only counts the baseline period (services/scorer/domain/model/).
        times = scan_times[(carrier, origin)]
        for moment in {first_scan_at, delivery_scan_at, last_scan_at}:
            if moment is not None:
                times.append(moment)
    state.health = carrier_health(scan_times, now, settings)
    _add_silences(state, scanned, scan_rows, now, settings)
    return state


def _add_silences(
    state: ModelState,
    scanned: dict[str, tuple[LaneKey, datetime, datetime | None, datetime]],
    scan_rows: Sequence[Any],
    now: datetime,
    settings: ModelSettings,
) -> None:
    """The silences between the scans of recent parcels (learnt per lane across sellers:
    how long a service's parcels usually go without a scan in each stage), and the recent
    cohort of each seller's lane with the silence each parcel is in now."""
    by_number: dict[str, set[tuple[datetime, bool, str]]] = defaultdict(set)
    for tracking_number, status, occurred_at in scan_rows:
        if tracking_number in scanned:
            # Sorted by time, a delivery scan after any other scan of the same moment.
            by_number[tracking_number].add((occurred_at, status in DELIVERY_SCAN_STATUSES, status))
    for tracking_number, (lane, first_scan_at, delivery_scan_at, deadline) in scanned.items():
        ordered = [(status, moment) for moment, _, status in sorted(by_number.get(tracking_number, ()))]
        for observation in silence_observations(("", *lane[1:]), ordered, now, settings):  # type: ignore[arg-type]
            state.add(observation)
        last_status, last_at = ordered[-1] if ordered else (None, first_scan_at)
        state.in_flight.append(
            InFlight(
                lane,
                (now - first_scan_at).total_seconds() / 3600.0,
                delivery_scan_at is not None and delivery_scan_at <= now,
                STAGE_OF_SCAN.get(last_status or ""),
                (now - last_at).total_seconds() / 3600.0,
                (deadline - first_scan_at).total_seconds() / 3600.0,
            )
        )


async def save_model_state(connection: AsyncConnection, state: ModelState) -> None:
    assert state.computed_at is not None
    statement = dialect_insert(connection, model_state).values(
        name=MODEL_STATE_NAME, computed_at=state.computed_at, body=_JSON.encode(state.lanes_only().as_json()).decode()
    )
    statement = statement.on_conflict_do_update(
        index_elements=[model_state.c.name],
        set_={"computed_at": statement.excluded.computed_at, "body": statement.excluded.body},
    )
    await connection.execute(statement)


async def refresh_model(connection: AsyncConnection, evaluator: Evaluator, now: datetime) -> int:
    """Rebuild the model from the data, store it, and make the pending packages of every
    lane whose curves or carrier health moved due for review. Returns how many were marked.

    Because the model is a function of the stored data and ``now`` only, a shipments-first
    backfill and a scans-first one end with the same probabilities once this has run.
    """
    settings = evaluator.policy.forecast
    state = await build_model_state(connection, settings, now)
    model = await asyncio.to_thread(Model, state, settings)
    c = packages.c
    lanes_result = await connection.execute(
        select(c.seller_id, c.carrier, c.service, c.ship_from_country, c.marketplace)
        .where(c.state == PackageState.PENDING.value)
        .distinct()
    )
    lanes = {(s, carrier or "", service_key(service), o, m) for s, carrier, service, o, m in lanes_result}
    previous = evaluator.model if evaluator.model.state.computed_at is not None else None
    changed = model.changed_lanes(previous, lanes)
    marked = 0
    pairs = sorted({(lane[0], lane[1]) for lane in changed})
    for chunk in chunks(pairs, 500):
        result = await connection.execute(
            update(packages)
            .where(
                c.state == PackageState.PENDING.value,
                tuple_(c.seller_id, func.coalesce(c.carrier, "")).in_(chunk),
            )
            .values(review_at=None)
        )
        marked += result.rowcount or 0
    await save_model_state(connection, state)
    evaluator.model = model
    return marked


ProjectionKey = tuple[str, str, str, date]


async def refresh_projections(connection: AsyncConnection, settings: ModelSettings, today: date, now: datetime) -> int:
    """Rebuild the projected orders of every seller-category that confirmed packages in the
    last two weeks (services/scorer/projection.py) and mark the categories whose projection
    moved by half a package or more; returns how many were marked."""
    c = packages.c
    since = now - timedelta(days=max(LAG_DAYS, settings.projection_volume_days))
    result = await connection.execute(
        select(
            c.seller_id, c.marketplace, c.category, c.confirmed_at, c.promised_date, c.state, c.probability_micro
        ).where(c.confirmed_at >= since, c.state != PackageState.CANCELLED.value)
    )
    recent: dict[tuple[str, str, str], list[RecentPackage]] = defaultdict(list)
    for seller_id, marketplace, category, confirmed_at, promised, state, probability_micro in result:
        probability = 1.0 if state == PackageState.VALID.value else 0.0
        if state == PackageState.PENDING.value:
            probability = probability_micro / MICRO if promised >= today else 0.0
        recent[(seller_id, marketplace, category)].append(RecentPackage(confirmed_at, promised, probability))
    fresh: dict[ProjectionKey, tuple[int, int, int]] = {}
    for scope, items in recent.items():
        for day, projected in project(items, today, now, settings).items():
            fresh[(*scope, day)] = (
                round(projected.expected * MICRO),
                round(projected.expected_valid * MICRO),
                round(projected.variance * MICRO),
            )
    p = projected_counts.c
    old: dict[ProjectionKey, tuple[int, int, int]] = {
        (s_, m, cat, d): (e, v, var)
        for s_, m, cat, d, e, v, var in await connection.execute(
            select(p.seller_id, p.marketplace, p.category, p.promised_date, p.expected_micro,
                   p.expected_valid_micro, p.variance_micro)
        )
    }  # fmt: skip
    moved: dict[tuple[str, str, str], float] = defaultdict(float)
    for key in old.keys() | fresh.keys():
        before, after = old.get(key, (0, 0, 0)), fresh.get(key, (0, 0, 0))
        # What moves a forecast: projected failures (expected - expected valid).
        moved[key[:3]] += abs((after[0] - after[1]) - (before[0] - before[1])) / MICRO
    await connection.execute(delete(projected_counts))
    rows = [
        {
            "seller_id": key[0],
            "marketplace": key[1],
            "category": key[2],
            "promised_date": key[3],
            "expected_micro": value[0],
            "expected_valid_micro": value[1],
            "variance_micro": value[2],
        }
        for key, value in sorted(fresh.items())
    ]
    if rows:
        statement, parameters = insert_rows(connection, projected_counts, rows)
        await execute_rows(connection, statement, parameters)
    changed = sorted(scope for scope, amount in moved.items() if amount >= 0.5)
    await mark_changed(connection, changed)
    return len(changed)


async def mark_window_slide(connection: AsyncConnection, today: date, lag_days: int, forecast_days: int) -> bool:
    """Once per day (across instances): mark every seller-category whose window moved."""
    result = await connection.execute(
        update(clock_state).where(clock_state.c.name == "window", clock_state.c.day < today).values(day=today)
    )
    if result.rowcount == 0:
        exists = (await connection.execute(select(clock_state.c.day).where(clock_state.c.name == "window"))).first()
        if exists is not None:
            return False
        inserted = await connection.execute(
            dialect_insert(connection, clock_state)
            .values(name="window", day=today)
            .on_conflict_do_nothing()
            .returning(clock_state.c.name)
        )
        if inserted.first() is None:
            return False
    # Every seller-category with a package that was or will be in a window around today.
    first = today - timedelta(days=31 + lag_days)
    last = today + timedelta(days=forecast_days)
    scopes = await connection.execute(
        select(daily_counts.c.seller_id, daily_counts.c.marketplace, daily_counts.c.category)
        .where(daily_counts.c.promised_date.between(first, last))
        .distinct()
    )
    await mark_changed(connection, sorted((s, m, c) for s, m, c in scopes))
    return True


async def prune_counters(connection: AsyncConnection, before: date) -> None:
    """Drop counter rows promised before ``before``: no window reads them any more (a past
    ``as_of`` is recomputed from packages), and they would slow the per-seller reads."""
    await connection.execute(delete(daily_reasons).where(daily_reasons.c.promised_date < before))
    await connection.execute(delete(daily_counts).where(daily_counts.c.promised_date < before))


# -- reads -----------------------------------------------------------------------------

Scope = tuple[str, str]


@dataclass
class ScopeCounts:
    days: dict[date, DayCounts]
    #: Invalid packages of the window by reason.
    reasons: dict[str, int]
    #: Pending packages promised from the evaluation day on, by reason.
    pending_reasons: dict[str, int] = field(default_factory=dict)
    #: Silent carriers behind those pending packages (filled by the service).
    carrier_health: tuple[CarrierHealthNote, ...] = ()


async def seller_exists(connection: AsyncConnection, seller_id: str) -> bool:
    row = await connection.execute(select(packages.c.id).where(packages.c.seller_id == seller_id).limit(1))
    return row.first() is not None


async def read_counts(
    connection: AsyncConnection,
    seller_id: str,
    first: date,
    last: date,
    window_first: date,
    window_last: date,
    scope: tuple[str, str] | None = None,
) -> dict[Scope, ScopeCounts]:
    """Counter rows of a seller for promised dates ``first .. last``, reasons over the window."""
    conditions = [daily_counts.c.seller_id == seller_id, daily_counts.c.promised_date.between(first, last)]
    if scope is not None:
        conditions += [daily_counts.c.marketplace == scope[0], daily_counts.c.category == scope[1]]
    found: dict[Scope, ScopeCounts] = {}
    result = await connection.execute(
        select(
            daily_counts.c.marketplace,
            daily_counts.c.category,
            daily_counts.c.promised_date,
            daily_counts.c.valid,
            daily_counts.c.invalid,
            daily_counts.c.pending,
            daily_counts.c.expected_valid_micro,
            daily_counts.c.variance_micro,
        ).where(*conditions)
    )
    for marketplace, category, promised, valid, invalid, pending, expected, variance in result:
        entry = found.setdefault((marketplace, category), ScopeCounts({}, {}))
        entry.days[promised] = DayCounts(valid, invalid, pending, expected / MICRO, variance / MICRO)
    await add_projections(connection, found, seller_id, first, last, scope)
    reason_conditions = [
        daily_reasons.c.seller_id == seller_id,
        daily_reasons.c.promised_date.between(window_first, last),
        daily_reasons.c.state.in_([PackageState.INVALID.value, PackageState.PENDING.value]),
    ]
    if scope is not None:
        reason_conditions += [daily_reasons.c.marketplace == scope[0], daily_reasons.c.category == scope[1]]
    upcoming = daily_reasons.c.promised_date > window_last
    reasons = await connection.execute(
        select(
            daily_reasons.c.marketplace,
            daily_reasons.c.category,
            daily_reasons.c.reason,
            upcoming,
            func.sum(daily_reasons.c.count),
        )
        .where(*reason_conditions)
        .group_by(daily_reasons.c.marketplace, daily_reasons.c.category, daily_reasons.c.reason, upcoming)
    )
    for marketplace, category, reason, is_upcoming, count in reasons:
        if not count:
            continue
        entry = found.setdefault((marketplace, category), ScopeCounts({}, {}))
        if is_upcoming:
            if reason not in STRUCTURAL_REASONS:
                entry.pending_reasons[reason] = entry.pending_reasons.get(reason, 0) + int(count)
            continue
        # In the window every promised date has passed: a still-pending reason is the invalid one.
        name = invalid_reason_for(Reason(reason)).value
        entry.reasons[name] = entry.reasons.get(name, 0) + int(count)
    return found


async def add_projections(
    connection: AsyncConnection,
    found: dict[Scope, ScopeCounts],
    seller_id: str,
    first: date,
    last: date,
    scope: tuple[str, str] | None = None,
) -> None:
    """Add the projected orders (not confirmed yet) of a seller to its per-day counts."""
    p = projected_counts.c
    conditions = [p.seller_id == seller_id, p.promised_date.between(first, last)]
    if scope is not None:
        conditions += [p.marketplace == scope[0], p.category == scope[1]]
    result = await connection.execute(
        select(
            p.marketplace, p.category, p.promised_date, p.expected_micro, p.expected_valid_micro, p.variance_micro
        ).where(*conditions)
    )
    for marketplace, category, promised, expected, expected_valid, variance in result:
        entry = found.setdefault((marketplace, category), ScopeCounts({}, {}))
        counts = entry.days.get(promised, DayCounts())
        entry.days[promised] = replace(
            counts,
            projected=expected / MICRO,
            projected_valid=expected_valid / MICRO,
            projected_variance=variance / MICRO,
        )


async def recompute_counts(
    connection: AsyncConnection,
    evaluator: Evaluator,
    seller_id: str,
    as_of: date,
    first: date,
    last: date,
    window_first: date,
    window_last: date,
    scope: tuple[str, str] | None = None,
) -> dict[Scope, ScopeCounts]:
    """Counts as they were on ``as_of``: scans that occurred before the end of that day, all data known now."""
    columns = [packages.c[name] for name in PACKAGE_COLUMNS]
    conditions = [packages.c.seller_id == seller_id, packages.c.promised_date.between(first, last)]
    if scope is not None:
        conditions += [packages.c.marketplace == scope[0], packages.c.category == scope[1]]
    rows = [package_from_row(row) for row in await connection.execute(select(*columns).where(*conditions))]
    tracking_numbers = {row.tracking_number for row in rows}
    found_scans = await load_scans(connection, tracking_numbers)
    found_cancellations = await load_cancellations(connection, tracking_numbers)
    end_of_day = datetime.combine(as_of + timedelta(days=1), time())
    deltas = Deltas.empty()
    for row in rows:
        evaluated = evaluator.evaluate_in_place(
            row,
            found_scans.get(row.tracking_number, ()),
            found_cancellations.get(row.tracking_number, ()),
            as_of,
            occurred_before=end_of_day,
            now=end_of_day,
        )
        deltas.add(evaluated, +1)
    found: dict[Scope, ScopeCounts] = {}
    for (_, marketplace, category, promised), (valid, invalid, pending, expected, variance) in deltas.counts.items():
        entry = found.setdefault((marketplace, category), ScopeCounts({}, {}))
        entry.days[promised] = DayCounts(valid, invalid, pending, expected / MICRO, variance / MICRO)
    for (_, marketplace, category, promised, state, reason), count in deltas.reasons.items():
        if not count:
            continue
        if window_first <= promised <= window_last:
            entry = found.setdefault((marketplace, category), ScopeCounts({}, {}))
            name = invalid_reason_for(Reason(reason)).value
            entry.reasons[name] = entry.reasons.get(name, 0) + count
        elif promised > window_last and state == PackageState.PENDING.value:
            entry = found.setdefault((marketplace, category), ScopeCounts({}, {}))
            entry.pending_reasons[reason] = entry.pending_reasons.get(reason, 0) + count
    return found


async def outbox_batch(connection: AsyncConnection, limit: int) -> list[tuple[str, str, str, int]]:
    result = await connection.execute(
        select(outbox.c.seller_id, outbox.c.marketplace, outbox.c.category, outbox.c.version)
        .order_by(outbox.c.seller_id, outbox.c.marketplace, outbox.c.category)
        .limit(limit)
    )
    return [(s, m, c, int(v)) for s, m, c, v in result]


async def outbox_remove(connection: AsyncConnection, published: Sequence[tuple[str, str, str, int]]) -> None:
    """Delete published marks unless they changed meanwhile (then they are published again)."""
    if not published:
        return
    if connection.dialect.name == "postgresql":
        # One JSON parameter joined to the table: compiling a 500-term OR per round cost
        # more CPU than the delete itself.
        names = ("seller_id", "marketplace", "category", "version")
        document = bindparam(
            "marks", _JSON.encode([dict(zip(names, mark, strict=True)) for mark in published]).decode(), type_=Text()
        )
        source = (
            func.json_to_recordset(cast(document, postgresql.JSON))
            .table_valued(*(column(name, outbox.c[name].type) for name in names))
            .render_derived(name="published", with_types=True)
        )
        await connection.execute(delete(outbox).where(*(outbox.c[name] == source.c[name] for name in names)))
        return
    for chunk in chunks(list(published), 500):
        await connection.execute(
            delete(outbox).where(
                or_(
                    *(
                        and_(
                            outbox.c.seller_id == s,
                            outbox.c.marketplace == m,
                            outbox.c.category == c,
                            outbox.c.version == v,
                        )
                        for s, m, c, v in chunk
                    )
                )
            )
        )


async def outbox_size(connection: AsyncConnection) -> int:
    return int((await connection.execute(select(func.count()).select_from(outbox))).scalar_one())


TodayFunction = Callable[[], date]


def utc_today() -> date:
    return datetime.now(UTC).date()


#: Every table written through a staging table (:func:`copy_to_staging`), and the columns
#: its staging table has, in the order COPY sends them.
STAGED_COLUMNS: dict[Table, Sequence[str]] = {
    packages: _VALUE_NAMES,
    scans: SCAN_COLUMNS,
    daily_counts: COUNT_COLUMNS,
    daily_reasons: REASON_COLUMNS,
    outbox: SCOPE_COLUMNS,
}
