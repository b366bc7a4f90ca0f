"""What the forecast model learns from, as flat columns (services/scorer/domain/model/batch.py):
the packages of the learning period, and the physical scans of the recent ones.

On PostgreSQL the rows come back as arrays (``array_agg`` per lane, times as integer
microseconds), so that a million packages cost a few arrays, not a million Python rows,
and a scorer keeps them between refreshes (:class:`ModelCache`): a refresh reads only the
rows written since the last one (their ``xmin`` is not older than the oldest transaction
that last read could not see) and the scans of the tracking numbers they touch. SQLite
(``make run``, tests) reads every row each time."""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import and_, case, func, literal, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.domain.freshness import LaneId
from services.scorer.domain.model.batch import MISSING, PackageColumns, ScanColumns, SettledSums
from services.scorer.domain.model.lanes import LaneKey
from services.scorer.domain.model.parameters import ModelSettings
from services.scorer.domain.packages import counted_deadline, service_key
from services.scorer.domain.policy import STRUCTURAL_REASONS
from services.scorer.domain.sources import CarrierOrigin
from services.scorer.storage.dialect import driver_connection, uses_copy
from services.scorer.storage.model_inputs import lane_id
from services.scorer.storage.schema import packages, scans
from shared.schemas import PHYSICAL_SCAN_STATUSES, PackageState

_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
RawLane = tuple[str, str | None, str | None, str, str]
#: What a refresh keeps of each package beside its columns: whether its observations are in
#: the settled sums (:class:`~services.scorer.domain.model.batch.Settled`), with which
#: ``selected_waiting``, and whether its silences are.
SETTLED_FIELDS = ("settled", "settled_waiting", "silences_settled")
PACKAGE_FIELDS = ("id", "number", "lane", "confirmed", "first", "delivery", "last", "deadline", "learns", "kept",
                  *SETTLED_FIELDS)  # fmt: skip
_FLAG_FIELDS = ("learns", "kept", *SETTLED_FIELDS)
SCAN_FIELDS = ("number", "status", "source", "moment")


def _promised_of(deadline_us: int) -> date:
    """The promised date of a counted deadline (``counted_deadline``: two days after it, at midnight)."""
    return (_EPOCH + deadline_us * _MICROSECOND).date() - timedelta(days=2)


def micros(moment: datetime | None) -> int:
    return int(MISSING) if moment is None else (moment - _EPOCH) // _MICROSECOND


def _empty(dtype: Any = np.int64) -> np.ndarray:
    return np.zeros(0, dtype=dtype)


@dataclass
class StoredRows:
    """Every package confirmed in the learning period (cancelled and carrier-less ones too:
    their tracking numbers still bring scans) and the physical scans of the recent ones'
    tracking numbers. ``number`` identifies a tracking number (a 64-bit hash of it on
    PostgreSQL); ``lane``, ``status`` and ``source`` index the lists below."""

    lanes: list[RawLane] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    scans: dict[str, np.ndarray] = field(default_factory=dict)
    #: The settled sums of the rows flagged ``settled``/``silences_settled`` (kept rows on
    #: PostgreSQL only; None: every refresh computes everything).
    sums: SettledSums | None = None
    #: Whether these rows are kept between refreshes (then ``sums`` are kept with them).
    kept_between_refreshes: bool = False
    #: The latest moment the sums were brought to (time runs forward for them).
    settled_until_us: int = int(MISSING)
    #: The promised days the packages rewritten by the last read had before (None: not a read
    #: of the changes, the days are unknown).
    rewritten_days: set[date] | None = None
    #: id of ``lanes``, ``statuses`` or ``sources`` -> {item: its position}.
    _positions: dict[int, dict[Any, int]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in PACKAGE_FIELDS:
            self.columns.setdefault(name, _empty(bool if name in _FLAG_FIELDS else np.int64))
        for name in SCAN_FIELDS:
            self.scans.setdefault(name, _empty())

    def index(self, values: list[Any], value: Any) -> int:
        """``value``'s position in ``values`` (appended when new), through a dictionary kept
        beside each list: tens of thousands of seller lanes made ``list.index`` quadratic."""
        positions = self._positions.setdefault(id(values), {item: at for at, item in enumerate(values)})
        position = positions.get(value)
        if position is None:
            position = positions[value] = len(values)
            values.append(value)
        return position

    def add_packages(self, lane: RawLane, values: dict[str, list[Any]]) -> None:
        """Append the packages of one lane (rows already here are replaced first by the caller)."""
        self.add_lanes([(lane, values)])

    def add_lanes(self, lanes: Iterable[tuple[RawLane, Mapping[str, Sequence[Any]]]]) -> None:
        """Append the packages of many lanes with one concatenation per column (one per lane
        copied every column again for each lane: seconds, on the event loop, with 25,000 sellers)."""
        parts: dict[str, list[np.ndarray]] = {name: [self.columns[name]] for name in PACKAGE_FIELDS}
        for lane, values in lanes:
            parts["lane"].append(np.full(len(values["id"]), self.index(self.lanes, lane), dtype=np.int64))
            for name in PACKAGE_FIELDS:
                if name in SETTLED_FIELDS:  # new rows: nothing of them is settled yet
                    parts[name].append(np.zeros(len(values["id"]), dtype=bool))
                elif name != "lane":
                    dtype = bool if name in _FLAG_FIELDS else np.int64
                    parts[name].append(np.asarray(values[name], dtype=dtype))
        for name in PACKAGE_FIELDS:
            self.columns[name] = np.concatenate(parts[name])

    def add_scans(self, status: str, source: str, numbers: list[int], moments: list[int]) -> None:
        size = len(numbers)
        added = {
            "number": np.asarray(numbers, dtype=np.int64),
            "status": np.full(size, self.index(self.statuses, status), dtype=np.int64),
            "source": np.full(size, self.index(self.sources, source), dtype=np.int64),
            "moment": np.asarray(moments, dtype=np.int64),
        }
        for name in SCAN_FIELDS:
            self.scans[name] = np.concatenate((self.scans[name], added[name]))

    def keep_packages(self, kept: np.ndarray) -> None:
        for name in PACKAGE_FIELDS:
            self.columns[name] = self.columns[name][kept]

    def keep_scans(self, kept: np.ndarray) -> None:
        for name in SCAN_FIELDS:
            self.scans[name] = self.scans[name][kept]


@dataclass
class ModelInput:
    """The columns the model's state is computed from."""

    packages: PackageColumns
    scans: ScanColumns
    #: The packages whose scans teach silences (one per tracking number).
    silence_learners: np.ndarray
    #: Recent physical scans per carrier x origin and push source (domain/sources.py).
    source_counts: dict[CarrierOrigin, Counter[str]]
    #: The row (of :class:`StoredRows`) of each learning package.
    learning_rows: np.ndarray = field(default_factory=_empty)
    #: Per learning package, whether its silences may settle: its tracking number is no other
    #: package's of the period and has no scan timed after now.
    silences_may_settle: np.ndarray = field(default_factory=lambda: _empty(bool))
    #: The packages of the learning period per lane, not cancelled and with a carrier (what
    #: the model was built from: domain/freshness.py's ``ModelBuild``).
    lane_counts: dict[LaneId, int] = field(default_factory=dict)
    #: The promised days the packages rewritten since the last read had (StoredRows.rewritten_days).
    rewritten_days: set[date] | None = None


def _lowest_per_number(number: np.ndarray, ids: np.ndarray, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Among the ``chosen`` rows (rows in tracking-number order), the one of lowest id per
    tracking number: (numbers sorted, rows)."""
    rows = np.flatnonzero(chosen)
    if len(rows) == 0:
        return _empty(), _empty()
    starts = np.ones(len(rows), dtype=bool)
    starts[1:] = number[rows][1:] != number[rows][:-1]
    lowest = np.minimum.reduceat(ids[rows], np.flatnonzero(starts))
    picked = ids[rows] == lowest[np.cumsum(starts) - 1]
    return number[rows][picked], rows[picked]


def _found_at(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Where each of ``values`` is or would be in the sorted ``keys`` (clipped to the last):
    searched in sorted order, which is several times faster on large arrays than at random."""
    if len(values) < 2 or bool(np.all(values[1:] >= values[:-1])):
        return np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    order = np.argsort(values, kind="stable")
    at = np.empty(len(values), dtype=np.int64)
    at[order] = np.searchsorted(keys, values[order])
    return np.minimum(at, len(keys) - 1)


def member(values: np.ndarray, of: np.ndarray) -> np.ndarray:
    """Whether each of ``values`` is in ``of`` (by sorting: ``np.isin`` hashes 64-bit keys slowly)."""
    if len(of) == 0:
        return np.zeros(len(values), dtype=bool)
    keys = np.sort(of)
    found: np.ndarray = keys[_found_at(keys, values)] == values
    return found


def _lookup(keys: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """``values`` of each of ``wanted`` in the sorted ``keys`` (-1 where absent)."""
    if len(keys) == 0:
        return np.full(len(wanted), -1, dtype=np.int64)
    at = _found_at(keys, wanted)
    return np.where(keys[at] == wanted, values[at], -1)


def model_input_of(rows: StoredRows, since: datetime, silence_since: datetime, now: datetime) -> ModelInput:
    """The columns of the learning period as of ``now`` (pure arithmetic, run in a worker thread).

    A tracking number shared by packages (one parcel, several orders) teaches its silences
    once, with its learning package of lowest id, and its scans count, per push source, for
    the carrier of its package of lowest id."""
    now_us, since_us, silence_us = micros(now), micros(since), micros(silence_since)
    # Packages and scans in tracking-number order, kept so: the next refresh's stable sorts
    # then only merge in what it added (and the lookups below search in order).
    rows.keep_packages(np.argsort(rows.columns["number"], kind="stable"))
    rows.keep_scans(np.argsort(rows.scans["number"], kind="stable"))
    c = rows.columns
    ids, number = c["id"], c["number"]
    window = c["confirmed"] >= since_us
    kept = window & c["kept"]
    learns = kept & c["learns"]
    lane_keys, carriers, sellers, lane_carrier, lane_seller = _lane_tables(rows)
    carrier_of = np.asarray(lane_carrier, dtype=np.int64)[c["lane"]] if lane_keys else _empty()
    seller_of = np.asarray(lane_seller, dtype=np.int64)[c["lane"]] if lane_keys else _empty()
    first, delivery, deadline = c["first"], c["delivery"], c["deadline"]
    # Per seller, the first deadline from which its data holds every package whatever its
    # outcome (observations.selected_from): the earliest of a package with a delivery scan.
    complete = np.full(len(sellers), np.iinfo(np.int64).max, dtype=np.int64)
    delivered = kept & (delivery != MISSING)
    np.minimum.at(complete, seller_of[delivered], deadline[delivered])
    has_complete = np.zeros(len(sellers), dtype=bool)
    has_complete[seller_of[delivered]] = True
    selected_waiting = has_complete[seller_of] & (deadline < complete[seller_of])
    scanned = (first != MISSING) & (first <= now_us)
    learner_numbers, learner_rows = _lowest_per_number(number, ids, learns & scanned & (c["confirmed"] >= silence_us))
    counted_numbers, counted_rows = _lowest_per_number(number, ids, kept)
    recent_numbers = number[window & (c["confirmed"] >= silence_us)]
    s = rows.scans
    relevant = member(s["number"], recent_numbers) & (s["moment"] <= now_us)
    scan_number, scan_status, scan_source, scan_moment = (
        s[name][relevant] for name in ("number", "status", "source", "moment")
    )
    carrier_names = list(carriers)
    source_counts: dict[CarrierOrigin, Counter[str]] = defaultdict(Counter)
    counted = _lookup(counted_numbers, counted_rows, scan_number)
    has_carrier = counted >= 0
    sources = len(rows.sources)
    pairs = np.bincount(
        carrier_of[counted[has_carrier]] * sources + scan_source[has_carrier], minlength=len(carrier_names) * sources
    )
    for pair in np.flatnonzero(pairs).tolist():
        source_counts[carrier_names[pair // sources]][rows.sources[pair % sources]] += int(pairs[pair])
    # Learners are numbered among the learning packages only.
    position = np.cumsum(learns) - 1
    learner = _lookup(learner_numbers, learner_rows, scan_number)
    with_learner = learner >= 0
    silence_rows = np.zeros(len(ids), dtype=bool)
    silence_rows[learner_rows] = True
    package_columns = PackageColumns(
        lane=c["lane"][learns],
        confirmed=c["confirmed"][learns],
        first=first[learns],
        delivery=delivery[learns],
        last=c["last"][learns],
        deadline=deadline[learns],
        selected_waiting=selected_waiting[learns],
        carrier=carrier_of[learns],
        lanes=lane_keys,
        carriers=carrier_names,
    )
    scan_columns = ScanColumns(
        package=position[learner[with_learner]],
        moment=scan_moment[with_learner],
        status=scan_status[with_learner],
        statuses=list(rows.statuses),
    )
    # Silences settle only where nothing but a write can change them (batch.Settled).
    shared = np.zeros(len(number), dtype=bool)
    same = number[1:] == number[:-1]
    shared[1:] |= same
    shared[:-1] |= same
    unsettled = shared | member(number, s["number"][s["moment"] > now_us])
    lane_counts: Counter[LaneId] = Counter()
    per_lane = np.bincount(c["lane"][kept], minlength=len(rows.lanes)) if len(rows.lanes) else _empty()
    for index in np.flatnonzero(per_lane).tolist():
        _, carrier, service, origin, marketplace = rows.lanes[index]
        lane_counts[lane_id(carrier, service, origin, marketplace)] += int(per_lane[index])
    return ModelInput(package_columns, scan_columns, silence_rows[learns], dict(source_counts),
                      np.flatnonzero(learns), ~unsettled[learns], dict(lane_counts), rows.rewritten_days)  # fmt: skip


def _lane_tables(
    rows: StoredRows,
) -> tuple[list[LaneKey], dict[tuple[str, str], int], dict[str, int], list[int], list[int]]:
    """Each stored lane's key, carrier x origin and seller (numbered in order: lanes are only
    ever appended, so a lane keeps its number while the rows are kept)."""
    lane_keys: list[LaneKey] = []
    carriers: dict[tuple[str, str], int] = {}
    sellers: dict[str, int] = {}
    lane_carrier, lane_seller = [], []
    for seller, carrier, service, origin, marketplace in rows.lanes:
        lane_keys.append((seller, carrier or "", service_key(service), origin, marketplace))
        lane_carrier.append(carriers.setdefault((carrier or "", origin), len(carriers)))
        lane_seller.append(sellers.setdefault(seller, len(sellers)))
    return lane_keys, carriers, sellers, lane_carrier, lane_seller


def take_back_settled(rows: StoredRows, chosen: np.ndarray, now_us: int, settings: ModelSettings,
                      silences_only: bool = False) -> None:  # fmt: skip
    """Take the settled observations of the ``chosen`` rows out of the settled sums (their
    silences only, with ``silences_only``) before they change or leave: computed from the
    rows and scans as they were when added."""
    sums, c = rows.sums, rows.columns
    if sums is None:
        return
    packages_back = np.zeros(len(chosen), dtype=bool) if silences_only else chosen & c["settled"]
    silences_back = chosen & c["silences_settled"]
    if not packages_back.any() and not silences_back.any():
        return
    lane_keys = _lane_tables(rows)[0]

    def columns_of(picked: np.ndarray) -> PackageColumns:
        return PackageColumns(
            lane=c["lane"][picked], confirmed=c["confirmed"][picked], first=c["first"][picked],
            delivery=c["delivery"][picked], last=c["last"][picked], deadline=c["deadline"][picked],
            selected_waiting=c["settled_waiting"][picked], carrier=np.zeros(int(picked.sum()), dtype=np.int64),
            lanes=lane_keys, carriers=[],
        )  # fmt: skip

    if packages_back.any():
        sums.add_packages(columns_of(packages_back), now_us, settings, sign=-1)
        c["settled"] = c["settled"] & ~packages_back
    if silences_back.any():
        learners = columns_of(silences_back)
        numbers = c["number"][silences_back]
        order = np.argsort(numbers, kind="stable")
        s = rows.scans
        scan_package = _lookup(numbers[order], order, s["number"])
        mine = scan_package >= 0
        scans_back = ScanColumns(scan_package[mine], s["moment"][mine], s["status"][mine], list(rows.statuses))
        sums.take_back_silences(learners, scans_back, now_us, settings)
        c["silences_settled"] = c["silences_settled"] & ~silences_back


_STRUCTURAL = sorted(reason.value for reason in STRUCTURAL_REASONS)
_PHYSICAL = sorted(PHYSICAL_SCAN_STATUSES)


def _micros_sql(column: str) -> str:
    return f"COALESCE((EXTRACT(EPOCH FROM {column}) * 1000000)::int8, {int(MISSING)})"


_VALID, _CANCELLED = PackageState.VALID.value, PackageState.CANCELLED.value
#: The packages of the learning period per lane ($1: since, $2: the structural reasons; {changed}:
#: nothing, or the condition on the rows written since the last read).
_PACKAGES = f"""
SELECT seller_id, carrier, service, ship_from_country, marketplace, array_agg(id),
       array_agg(hashtextextended(tracking_number, 0)), array_agg({_micros_sql("confirmed_at")}),
       array_agg({_micros_sql("first_scan_at")}), array_agg({_micros_sql("delivery_scan_at")}),
       array_agg({_micros_sql("last_scan_at")}), array_agg({_micros_sql("promised_date + 2")}),
       array_agg(NOT (COALESCE(reason, '') = ANY($2::text[]) OR (state = '{_VALID}' AND first_scan_at IS NULL))),
       array_agg(carrier IS NOT NULL AND state <> '{_CANCELLED}'){{numbers}}
FROM packages
WHERE confirmed_at >= $1{{changed}}
GROUP BY seller_id, carrier, service, ship_from_country, marketplace
"""  # noqa: S608
_ALL_PACKAGES = _PACKAGES.format(numbers="", changed="")
#: $3: the oldest transaction the last read could not see (a row it saw is older).
_WRITTEN_SINCE = "age(xmin) <= age($3::text::xid)"
_CHANGED_PACKAGES = _PACKAGES.format(numbers=", array_agg(tracking_number)", changed=f" AND {_WRITTEN_SINCE}")
_SCANS = """
SELECT status, source, array_agg(hashtextextended(tracking_number, 0)), array_agg({moment})
FROM scans WHERE {numbers} AND status = ANY($2::text[])
GROUP BY status, source
"""
_RECENT_SCANS = _SCANS.format(
    moment=_micros_sql("occurred_at"),
    numbers="tracking_number IN (SELECT tracking_number FROM packages WHERE confirmed_at >= $1)",
)
_SCANS_OF_NUMBERS = _SCANS.format(moment=_micros_sql("occurred_at"), numbers="tracking_number = ANY($1::text[])")
_CHANGED_SCAN_NUMBERS = (
    "SELECT DISTINCT tracking_number FROM scans WHERE age(xmin) <= age($1::text::xid) AND status = ANY($2::text[])"
)
_SNAPSHOT_XMIN = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text"
_WINDOW_COUNT = "SELECT count(*) FROM packages WHERE confirmed_at >= $1"


@dataclass
class ModelCache:
    """The rows of the last read and what it could not see yet, kept by a scorer between refreshes."""

    rows: StoredRows
    since: datetime
    #: The oldest transaction in progress when the last read began (32-bit xid, as text).
    marker: str
    #: Whether the last read was of the changes only (not everything).
    incremental: bool = False


#: Per database engine (a scorer has one; the evaluation one per scenario).
_CACHES: weakref.WeakKeyDictionary[Any, ModelCache] = weakref.WeakKeyDictionary()
#: Read and not kept yet (:func:`kept_rows`).
_READ: weakref.WeakKeyDictionary[Any, ModelCache] = weakref.WeakKeyDictionary()


_LANE_ROW_FIELDS = ("id", "number", "confirmed", "first", "delivery", "last", "deadline", "learns", "kept")


def _add_lane_rows(rows: StoredRows, records: Sequence[Any]) -> None:
    """The rows of :data:`_PACKAGES` (one per lane, its packages as arrays) added to ``rows``."""
    rows.add_lanes(
        (tuple(record[:5]), dict(zip(_LANE_ROW_FIELDS, record[5:14], strict=True)))  # type: ignore[misc]
        for record in records
    )


async def read_stored_rows(
    connection: AsyncConnection, since: datetime, silence_since: datetime, now: datetime, settings: ModelSettings
) -> StoredRows:
    """The rows :func:`model_input_of` needs: on PostgreSQL what changed since this scorer's
    last read, merged into what it kept (kept again by :func:`kept_rows`); elsewhere everything."""
    if not uses_copy(connection):
        return await _read_generic(connection, since, silence_since)
    driver = await driver_connection(connection)
    marker = str(int(await driver.fetchval(_SNAPSHOT_XMIN)) % 2**32)
    key = connection.engine.sync_engine
    # Taken out while it is brought up to date: a refresh that fails half-way, or one running
    # at the same time, reads everything instead of rows merged half-way.
    cache = _CACHES.pop(key, None)
    incremental = cache is not None and since >= cache.since
    if cache is None or not incremental:
        rows = StoredRows()
        # Arrays of a whole period: merged off the event loop, which keeps consuming and answering.
        await asyncio.to_thread(_add_lane_rows, rows, await driver.fetch(_ALL_PACKAGES, since, _STRUCTURAL))
        for status, source, numbers, moments in await driver.fetch(_RECENT_SCANS, silence_since, _PHYSICAL):
            rows.add_scans(status, source, numbers, moments)
    else:
        rows = await _read_changes(driver, cache, since, micros(now), settings)
        expected = await driver.fetchval(_WINDOW_COUNT, since)
        if int(expected) != len(rows.columns["id"]):  # a package left the period by a write: read it all
            return await read_stored_rows(connection, since, silence_since, now, settings)
    rows.kept_between_refreshes = True
    _READ[key] = ModelCache(rows, since, marker, incremental)
    return rows


@contextmanager
def kept_rows(connection: AsyncConnection) -> Iterator[Callable[[], None]]:
    """Around a read and the arithmetic on its rows: calling what it yields keeps the rows
    for the next refresh; an error before (the rows and their settled sums may be half
    brought up to date) leaves nothing kept, and the next refresh reads everything."""
    key = connection.engine.sync_engine

    def keep() -> None:
        cache = _READ.pop(key, None)
        if cache is not None:
            _CACHES[key] = cache

    try:
        yield keep
    finally:
        _READ.pop(key, None)


async def _read_changes(driver: Any, cache: ModelCache, since: datetime, now_us: int,
                        settings: ModelSettings) -> StoredRows:  # fmt: skip
    """The cached rows, less those that left the period, with the rows written since the
    last read, and every scan of the tracking numbers that got a scan or a package since.
    What the rows that change or leave had put in the settled sums is taken back first,
    from the rows and scans as they were."""
    rows = cache.rows
    changed = await driver.fetch(_CHANGED_PACKAGES, since, _STRUCTURAL, cache.marker)
    changed_ids = np.asarray([id_ for record in changed for id_ in record[5]], dtype=np.int64)
    numbers = {number for record in changed for number in record[14]}
    numbers.update(row[0] for row in await driver.fetch(_CHANGED_SCAN_NUMBERS, cache.marker, _PHYSICAL))
    hashes = _empty()
    if numbers:
        found = await driver.fetchval("SELECT array_agg(hashtextextended(n, 0)) FROM unnest($1::text[]) n",
                                      sorted(numbers))  # fmt: skip
        hashes = np.asarray(found, dtype=np.int64)
    c = rows.columns
    leaving = c["confirmed"] < micros(since)
    rewritten = member(c["id"], changed_ids) if len(changed_ids) else np.zeros(len(leaving), dtype=bool)
    take_back_settled(rows, leaving | rewritten, now_us, settings)
    # A package of a tracking number that got a scan or another package: its silences change.
    take_back_settled(rows, member(c["number"], hashes), now_us, settings, silences_only=True)
    rows.rewritten_days = {_promised_of(deadline) for deadline in set(c["deadline"][rewritten].tolist())}
    rows.keep_packages(~(leaving | rewritten))
    await asyncio.to_thread(_add_lane_rows, rows, changed)
    if numbers:
        refetched = await driver.fetch(_SCANS_OF_NUMBERS, sorted(numbers), _PHYSICAL)
        rows.keep_scans(~member(rows.scans["number"], hashes))
        for status, source, scan_numbers, moments in refetched:
            rows.add_scans(status, source, scan_numbers, moments)
    # Scans of tracking numbers no package of the period has any more.
    rows.keep_scans(member(rows.scans["number"], rows.columns["number"]))
    return rows


async def _read_generic(connection: AsyncConnection, since: datetime, silence_since: datetime) -> StoredRows:
    """Every row of the period as plain rows (SQLite); tracking numbers numbered here."""
    c = packages.c
    learns = not_(
        or_(
            func.coalesce(c.reason, "").in_(_STRUCTURAL),
            and_(c.state == PackageState.VALID.value, c.first_scan_at.is_(None)),
        )
    )
    kept = and_(c.carrier.is_not(None), c.state != PackageState.CANCELLED.value)
    result = await connection.execute(
        select(
            c.seller_id, c.carrier, c.service, c.ship_from_country, c.marketplace, c.id, c.tracking_number,
            c.confirmed_at, c.first_scan_at, c.delivery_scan_at, c.last_scan_at, c.promised_date,
            case((learns, literal(True)), else_=literal(False)), case((kept, literal(True)), else_=literal(False)),
        ).where(c.confirmed_at >= since)
    )  # fmt: skip
    numbers: dict[str, int] = {}
    groups: dict[RawLane, dict[str, list[Any]]] = {}
    names = ("id", "number", "confirmed", "first", "delivery", "last", "deadline", "learns", "kept")
    for seller, carrier, service, origin, marketplace, id_, number, confirmed, first, delivery, last, promised, \
            learn, keep in result:  # fmt: skip
        values = groups.setdefault((seller, carrier, service, origin, marketplace), {name: [] for name in names})
        row = (id_, numbers.setdefault(number, len(numbers) + 1), micros(confirmed), micros(first), micros(delivery),
               micros(last), micros(counted_deadline(promised)), bool(learn), bool(keep))  # fmt: skip
        for name, value in zip(names, row, strict=True):
            values[name].append(value)
    rows = StoredRows()
    rows.add_lanes(groups.items())
    scan_rows = await connection.execute(
        select(scans.c.status, scans.c.source, scans.c.tracking_number, scans.c.occurred_at).where(
            scans.c.tracking_number.in_(select(c.tracking_number).where(c.confirmed_at >= silence_since)),
            scans.c.status.in_(_PHYSICAL),
        )
    )
    by_group: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
    for status, source, number, occurred in scan_rows:
        found = by_group.setdefault((status, source), ([], []))
        found[0].append(numbers.get(number, 0))
        found[1].append(micros(occurred))
    for (status, source), (scan_numbers, moments) in by_group.items():
        rows.add_scans(status, source, scan_numbers, moments)
    return rows
