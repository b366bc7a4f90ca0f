"""``python -m services.ingest amazon worker``: orders in, categories from the catalogue,
Amazon's own VTR out, for every connected seller and region, until SIGTERM.

The worker follows two topics from their beginning: the state topic (connections,
cursors, revocations: state.py) and ``vtr.shipments.v1`` (to know what the sellers' ERPs
and the worker itself already confirmed). Each connected seller and region then gets, up
to ``VTR_AMAZON_CONCURRENT_SELLERS`` of them side by side (each waiting only for its own
usage plans, which Amazon sets per seller and app):

- an orders round every ``VTR_AMAZON_ORDERS_POLL_SECONDS``: ``searchOrders`` with
  ``fulfilledBy=MERCHANT`` and ``lastUpdatedAfter`` = the stored cursor (first time: 30
  days back), every page to the end; each order with a shipped package becomes a
  confirmation, each cancelled order a cancellation; then the cursor moves to where
  Amazon says the answer ends, less :data:`CURSOR_OVERLAP` (an order updated while the
  round ran is read again rather than missed; re-reading is harmless, see below);
- a performance report right after connecting and then every
  ``VTR_AMAZON_REPORT_POLL_SECONDS``: ``createReport`` → ``getReport`` until ``DONE``,
  ``CANCELLED`` or ``FATAL`` → ``getReportDocument``; its ``validTrackingRate`` per
  marketplace goes on ``vtr.amazon-vtr.v1``. A ``FATAL`` report is asked again the next
  cycle (the next orders round), not the next day.

Counting once: the scorer keeps one package per seller and order id, whoever confirmed
it, so an order confirmed by the ERP and read from Amazon is one package. Who wins a
disagreement: Amazon's record for what Amazon scores (carrier name, tracking number, ship
time, promised date, marketplace: the worker's confirmation carries them), the seller's
ERP for the category; the scorer applies that rule whatever order the two confirmations
arrive in (``combine`` in services/scorer/domain/packages.py). The worker copies an ERP
category it already knows onto its confirmation, which saves a catalogue call. Each field
that differs is counted (``vtr_ingest_amazon_erp_disagreements_total{field}``) and logged
with the seller and order. An unchanged order read again is not published again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import msgspec

from services.ingest.amazon.client import (
    PERFORMANCE_REPORT,
    AmazonError,
    AuthorisationRevoked,
    LoginWithAmazon,
    SellingPartnerApi,
    UsagePlans,
)
from services.ingest.amazon.marketplaces import MARKETPLACES, marketplace_ids
from services.ingest.amazon.orders import (
    CategoryAnswer,
    CategoryTable,
    OrderProblem,
    asins_of,
    cancellation_of,
    category_of,
    confirmation_of,
    is_cancelled,
    marketplace_of,
)
from services.ingest.amazon.reports import ReportProblem, parse_performance_report
from services.ingest.amazon.sealing import SealError, TokenKeys
from services.ingest.amazon.state import (
    CONNECTED,
    Connection,
    Progress,
    Revocation,
    StateBook,
    state_record,
)
from services.ingest.metrics import (
    AMAZON_CARRIER_NAME_FLAGS,
    AMAZON_CONFIRMATIONS,
    AMAZON_CONNECTIONS,
    AMAZON_ERP_DISAGREEMENTS,
    AMAZON_OLDEST_ROUND,
    AMAZON_REPORTS,
    AMAZON_REVOKED,
    AMAZON_UNCATEGORISED,
)
from services.ingest.publisher import Publisher, Record
from services.ingest.settings import IngestSettings
from services.ingest.vendor_calls import Retryable, RetryPolicy, publisher_and_http, run_until_signal
from services.ingest.worker_health import WORKER_LOOP
from shared.kafka import make_consumer
from shared.schemas import (
    AMAZON_CODEC,
    CATEGORY_NOT_IN_CATALOGUE,
    RECONNECT_NEEDED,
    SHIPMENT_CODEC,
    SOURCE_AMAZON,
    AmazonConnectionChanged,
    ContractError,
    ShipmentCancelled,
    ShipmentConfirmed,
)
from shared.topics import AMAZON_STATE, AMAZON_VTR, SHIPMENTS

log = logging.getLogger(__name__)

#: The first round of a new connection reads this far back (the VTR window is 30 days).
FIRST_LOOKBACK = timedelta(days=30)
#: The cursor moves back this much from where Amazon's answer ended.
CURSOR_OVERLAP = timedelta(minutes=10)
#: Amazon wants the upper bound of an order search at least two minutes in the past.
AMAZON_SETTLE = timedelta(minutes=2)
#: Confirmations promised longer ago than this are not kept in memory.
KEEP_ORDERS = timedelta(days=45)
#: A catalogue answer is reused this long per ASIN and marketplace.
CATALOG_TTL_SECONDS = 7 * 86400.0
#: Wait between two getReport calls, and how many before giving up until the next cycle.
REPORT_CHECK_SECONDS = 30.0
REPORT_CHECKS = 120
_FINISHED_REPORT_STATES = frozenset({"DONE", "CANCELLED", "FATAL"})
_DISAGREEING_FIELDS = ("tracking_number", "carrier_name", "promised_delivery_date", "marketplace")


@dataclass
class Confirmed:
    """What the shipments topic says about one order (the newest ERP and Amazon records)."""

    erp: ShipmentConfirmed | None = None
    amazon: ShipmentConfirmed | None = None
    cancelled: bool = False


@dataclass
class Orders:
    """Confirmations and cancellations on ``vtr.shipments.v1``, by (seller, order). Every
    seller's, not only the connected ones': a seller's ERP confirmations may be on the
    topic before its connection is (the topics are read side by side), and a seller may
    connect after its ERP confirmed. The cost is memory (orders promised in the last 45
    days), as for the Yanwen poller."""

    by_order: dict[tuple[str, str], Confirmed] = field(default_factory=dict)

    def apply(self, payload: bytes | None, oldest: date) -> None:
        try:
            message = SHIPMENT_CODEC.decode(payload or b"")
        except ContractError:
            return
        if message.seller_id is None or message.order_id is None:
            return
        if isinstance(message, ShipmentConfirmed) and message.promised_delivery_date < oldest:
            return  # out of every window: Amazon's order is not re-read that far back either
        entry = self.by_order.setdefault((message.seller_id, message.order_id), Confirmed())
        if isinstance(message, ShipmentCancelled):
            entry.cancelled = True
            return
        if message.source == SOURCE_AMAZON:
            entry.amazon = message
        else:
            entry.erp = message

    def prune(self, oldest: date) -> None:
        """Forget orders whose confirmations were all promised before ``oldest``."""
        for key, entry in list(self.by_order.items()):
            dates = [c.promised_delivery_date for c in (entry.erp, entry.amazon) if c is not None]
            if dates and max(dates) < oldest:
                del self.by_order[key]


def _same(a: ShipmentConfirmed, b: ShipmentConfirmed | None) -> bool:
    return b is not None and msgspec.structs.replace(a, received_at=b.received_at) == b


#: The rounds running side by side: (seller, region) -> (its round key, the task serving it,
#: when it started in monotonic seconds).
Rounds = dict[tuple[str, str], tuple[tuple[str, str, str], asyncio.Task[None], float]]


class AmazonWorker:
    def __init__(
        self,
        settings: IngestSettings,
        http: httpx.AsyncClient,
        publisher: Publisher,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        report_check_seconds: float = REPORT_CHECK_SECONDS,
    ) -> None:
        self._settings = settings
        self._http = http
        self._publisher = publisher
        self._now = now
        self._sleep = sleep
        self._report_check_seconds = report_check_seconds
        self._keys = TokenKeys.parse(settings.amazon_token_key.get_secret_value())
        self._lwa = LoginWithAmazon(
            http, settings.lwa_token_url, settings.lwa_client_id, settings.lwa_client_secret.get_secret_value()
        )
        self._plans = UsagePlans()
        self._policy = RetryPolicy.from_settings(settings)
        self._categories = CategoryTable.load()
        self._catalog: dict[tuple[str, str], tuple[float, CategoryAnswer]] = {}
        self.book = StateBook()
        self.orders = Orders()
        #: (seller, region, token nonce) -> monotonic time of the next round
        self._next_round: dict[tuple[str, str, str], float] = {}

    # -- one seller ------------------------------------------------------------------

    def _api(self, connection: Connection) -> SellingPartnerApi:
        sealed = connection.sealed
        assert sealed is not None
        return SellingPartnerApi(
            self._http,
            self._lwa,
            self._plans,
            self._policy,
            endpoint=self._settings.spapi_endpoint(connection.region),
            selling_partner_id=connection.selling_partner_id,
            region=connection.region,
            refresh_token=self._keys.open(sealed, connection.context),
            sleep=self._sleep,
        )

    async def serve(self, connection: Connection) -> None:
        """One cycle for one connection: its orders, then its report when due."""
        key = (connection.seller_id, connection.region)
        progress = self.book.progress.get(key) or Progress(seller_id=key[0], region=key[1])
        try:
            api = self._api(connection)
            progress = await self.orders_round(api, connection, progress)
            if self._report_due(progress):
                progress = await self.report_round(api, connection, progress)
        except AuthorisationRevoked as error:
            await self._revoked(connection, str(error))
            return
        except SealError as error:
            log.error("refresh token does not open", extra={"seller_id": key[0], "problem": str(error)})
            return
        except (Retryable, AmazonError) as error:
            log.warning(
                "Amazon round failed; tried again next cycle", extra={"seller_id": key[0], "problem": str(error)}
            )
        await self._publisher.publish([state_record(progress)])
        self.book.progress[key] = progress

    def _report_due(self, progress: Progress) -> bool:
        if progress.report_at is None or progress.report_outcome not in ("DONE", "CANCELLED"):
            return True  # never ran, or FATAL/failed: this cycle
        return self._now() - progress.report_at >= timedelta(seconds=self._settings.amazon_report_poll_seconds)

    async def _revoked(self, connection: Connection, reason: str) -> None:
        AMAZON_REVOKED.inc()
        revocation = Revocation(
            seller_id=connection.seller_id,
            region=connection.region,
            token_nonce=connection.token_nonce or "",
            revoked_at=self._now(),
            reason=reason,
        )
        notice = AmazonConnectionChanged(
            seller_id=connection.seller_id,
            region=connection.region,
            state=RECONNECT_NEEDED,
            reason=reason,
            changed_at=revocation.revoked_at,
        )
        await self._publisher.publish(
            [
                state_record(revocation),
                Record(AMAZON_VTR, connection.seller_id.encode(), AMAZON_CODEC.encode(notice)),
            ]
        )
        self.book.revocations[(connection.seller_id, connection.region)] = revocation
        log.warning(
            "seller's Amazon authorisation is revoked: the seller must connect again",
            extra={"seller_id": connection.seller_id, "region": connection.region, "problem": reason},
        )

    async def orders_round(self, api: SellingPartnerApi, connection: Connection, progress: Progress) -> Progress:
        started = self._now()
        after = progress.orders_after or (started - FIRST_LOOKBACK)
        token: str | None = None
        answered_until: datetime | None = None
        seen = set(progress.marketplaces)
        while True:
            page = await api.search_orders(_iso(after), token)
            orders = page.get("orders") or []
            seen.update(
                str(order["salesChannel"]["marketplaceId"])
                for order in orders
                if isinstance(order, dict)
                and isinstance(order.get("salesChannel"), dict)
                and order["salesChannel"].get("marketplaceId") in MARKETPLACES
            )
            await self._publish_orders(api, connection, orders)
            bound = page.get("lastUpdatedBefore")
            if isinstance(bound, str):
                try:
                    answered_until = datetime.fromisoformat(bound.replace("Z", "+00:00"))
                except ValueError:
                    answered_until = None
            token = (page.get("pagination") or {}).get("nextToken")
            if not token:
                break
        until = min(answered_until or started, started - AMAZON_SETTLE)
        return msgspec.structs.replace(
            progress,
            orders_after=max(after, until - CURSOR_OVERLAP),
            orders_polled_at=started,
            marketplaces=tuple(sorted(seen)),
        )

    async def _publish_orders(self, api: SellingPartnerApi, connection: Connection, orders: list[Any]) -> None:
        records: list[Record] = []
        received_at = self._now()
        for order in orders:
            if not isinstance(order, dict) or not isinstance(order.get("orderId"), str):
                AMAZON_CONFIRMATIONS.labels("confirmed", "unreadable").inc()
                continue
            try:
                record = await self._order_record(api, connection, order, received_at)
            except (OrderProblem, KeyError, TypeError) as error:
                AMAZON_CONFIRMATIONS.labels("confirmed", "unreadable").inc()
                log.warning(
                    "Amazon order not usable",
                    extra={
                        "seller_id": connection.seller_id,
                        "order_id": order["orderId"],
                        "problem": str(error)[:300],
                    },
                )
                continue
            if record is not None:
                records.append(record)
        if records:
            await self._publisher.publish(records)

    async def _order_record(
        self, api: SellingPartnerApi, connection: Connection, order: dict[str, Any], received_at: datetime
    ) -> Record | None:
        seller = connection.seller_id
        known = self.orders.by_order.get((seller, order["orderId"]), Confirmed())
        if is_cancelled(order):
            confirmed = known.amazon or known.erp
            if confirmed is None or known.cancelled:
                return None  # never confirmed (nothing counts) or cancelled already
            cancellation = cancellation_of(order, seller, confirmed.tracking_number, received_at)
            self.orders.by_order.setdefault((seller, cancellation.order_id or ""), known).cancelled = True
            AMAZON_CONFIRMATIONS.labels("cancelled", "published").inc()
            return Record(SHIPMENTS, cancellation.tracking_number.encode(), SHIPMENT_CODEC.encode(cancellation))
        category = CategoryAnswer(known.erp.category) if known.erp is not None else await self._category(api, order)
        built = confirmation_of(order, seller, category.category, received_at, category.flag)
        if built is None:
            return None
        message, check = built
        if _same(message, known.amazon):
            AMAZON_CONFIRMATIONS.labels("confirmed", "unchanged").inc()
            return None
        AMAZON_CONFIRMATIONS.labels("confirmed", "published").inc()
        if known.erp is not None:
            self._note_disagreements(known.erp, message)
        if check.flags:
            AMAZON_CARRIER_NAME_FLAGS.labels(check.flags[0]).inc()
            log.warning(
                "carrier name not as Amazon's list spells it",
                extra={
                    "seller_id": seller,
                    "order_id": message.order_id,
                    "carrier_name": message.carrier_name,
                    "problem": check.advice,
                },
            )
        self.orders.by_order.setdefault((seller, message.order_id), known).amazon = message
        return Record(SHIPMENTS, message.tracking_number.encode(), SHIPMENT_CODEC.encode(message))

    @staticmethod
    def _note_disagreements(erp: ShipmentConfirmed, amazon: ShipmentConfirmed) -> None:
        differing = [name for name in _DISAGREEING_FIELDS if getattr(erp, name) != getattr(amazon, name)]
        for name in differing:
            AMAZON_ERP_DISAGREEMENTS.labels(name).inc()
        if differing:
            log.info(
                "ERP and Amazon disagree on an order; Amazon's record wins for these fields",
                extra={"seller_id": erp.seller_id, "order_id": erp.order_id, "fields": ",".join(differing)},
            )

    async def _category(self, api: SellingPartnerApi, order: dict[str, Any]) -> CategoryAnswer:
        marketplace = marketplace_of(order)
        asins = asins_of(order)
        if not asins:
            AMAZON_UNCATEGORISED.labels("no_asin").inc()
            return CategoryAnswer(self._categories.uncategorised, "order has no ASIN", CATEGORY_NOT_IN_CATALOGUE)
        key = (asins[0], marketplace.marketplace_id)
        cached = self._catalog.get(key)
        if cached is None or time.monotonic() - cached[0] > CATALOG_TTL_SECONDS:
            try:
                item = await api.get_catalog_item(*key)
            except AmazonError as error:
                answer = CategoryAnswer(
                    self._categories.uncategorised, f"catalogue did not answer: {error}", CATEGORY_NOT_IN_CATALOGUE
                )
            else:
                answer = category_of(item, marketplace.marketplace_id, self._categories)
            cached = (time.monotonic(), answer)
            self._catalog[key] = cached
            if answer.reason:
                AMAZON_UNCATEGORISED.labels("catalogue" if "catalogue" in answer.reason else "unmapped").inc()
                log.info(
                    "ASIN uncategorised",
                    extra={"asin": key[0], "marketplace": marketplace.code, "problem": answer.reason},
                )
        return cached[1]

    async def report_round(self, api: SellingPartnerApi, connection: Connection, progress: Progress) -> Progress:
        started = self._now()
        # The marketplaces the seller's orders came from; before any order, all of the region's.
        wanted = list(progress.marketplaces) or marketplace_ids(connection.region)
        report_id = await api.create_report(PERFORMANCE_REPORT, wanted)
        report: dict[str, Any] = {}
        for _ in range(REPORT_CHECKS):
            report = await api.get_report(report_id)
            if report.get("processingStatus") in _FINISHED_REPORT_STATES:
                break
            WORKER_LOOP.tick()
            await self._sleep(self._report_check_seconds)
        outcome = str(report.get("processingStatus", "unfinished"))
        if outcome != "DONE" or not report.get("reportDocumentId"):
            AMAZON_REPORTS.labels(outcome if outcome in _FINISHED_REPORT_STATES else "unfinished").inc()
            log.warning(
                "performance report did not finish", extra={"seller_id": connection.seller_id, "outcome": outcome}
            )
            return msgspec.structs.replace(progress, report_at=started, report_outcome=outcome)
        document = await api.get_report_document(str(report["reportDocumentId"]))
        try:
            figures = parse_performance_report(document, connection.seller_id, report_id, self._now())
        except ReportProblem as error:
            AMAZON_REPORTS.labels("unreadable").inc()
            log.warning(
                "performance report unreadable", extra={"seller_id": connection.seller_id, "problem": str(error)}
            )
            return msgspec.structs.replace(progress, report_at=started, report_outcome=f"failed: {error}"[:200])
        if figures:
            await self._publisher.publish(
                [Record(AMAZON_VTR, f.seller_id.encode(), AMAZON_CODEC.encode(f)) for f in figures]
            )
        AMAZON_REPORTS.labels("DONE").inc()
        return msgspec.structs.replace(progress, report_at=started, report_outcome="DONE")

    # -- the loop ----------------------------------------------------------------------

    def _oldest(self) -> date:
        """Orders promised before this are in no window any more (30 days, and a margin)."""
        return self._now().date() - KEEP_ORDERS

    def _count_connections(self) -> None:
        states = [self.book.status(key) for key in self.book.connections]
        for state in (CONNECTED, RECONNECT_NEEDED):
            AMAZON_CONNECTIONS.labels(state).set(states.count(state))

    async def run(self, stop: asyncio.Event) -> None:
        consumer = make_consumer(self._settings, AMAZON_STATE, SHIPMENTS, group_id=None)
        await consumer.start()
        next_prune = time.monotonic() + 3600
        #: Rounds run side by side while this loop keeps following both topics.
        rounds: Rounds = {}
        try:
            while not stop.is_set():
                WORKER_LOOP.tick()
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                for partition, records in batches.items():
                    for record in records:
                        if partition.topic == AMAZON_STATE:
                            self.book.apply(record.value)
                        else:
                            self.orders.apply(record.value, self._oldest())
                if any(batches.values()):
                    continue  # catch up with both topics before asking Amazon
                self._count_connections()
                if time.monotonic() >= next_prune:
                    self.orders.prune(self._oldest())
                    next_prune = time.monotonic() + 3600
                self._finish_rounds(rounds)
                self._start_due_rounds(rounds)
                self._show_oldest_round(rounds)
        finally:
            # A round may wait minutes for its usage plan (searchOrders: one call per 3
            # minutes once the burst is spent): SIGTERM does not wait for it; the cursor only
            # moves after a complete round, so the next start reads the same orders again.
            for _, task, _ in rounds.values():
                task.cancel()
            for _, task, _ in rounds.values():
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await consumer.stop()

    def _show_oldest_round(self, rounds: Rounds) -> None:
        """The loop ticks the heartbeat while rounds run side by side, so a stuck round (an
        answer that never comes within the client's timeouts, a usage-plan wait gone wrong)
        does not fail the probes: its age is a metric, and `VtrAmazonRoundStuck` alerts on it."""
        oldest = min((started for _, _, started in rounds.values()), default=None)
        AMAZON_OLDEST_ROUND.set(0.0 if oldest is None else time.monotonic() - oldest)

    def _start_due_rounds(self, rounds: Rounds) -> None:
        """Start a round for each connection that is due and not being served, up to
        ``VTR_AMAZON_CONCURRENT_SELLERS`` rounds at once (a seller and region is never
        served twice at once). A new or renewed connection (another token) is due at once."""
        for connection in self.book.active():
            if len(rounds) >= self._settings.amazon_concurrent_sellers:
                return
            key = (connection.seller_id, connection.region)
            round_key = (*key, connection.token_nonce or "")
            if key in rounds or time.monotonic() < self._next_round.get(round_key, 0.0):
                continue
            rounds[key] = (round_key, asyncio.create_task(self.serve(connection)), time.monotonic())

    def _finish_rounds(self, rounds: Rounds) -> None:
        """Take the finished rounds out, schedule each connection's next one; a round that
        failed unexpectedly fails the worker, as when rounds ran one after the other."""
        for key, (round_key, task, _) in list(rounds.items()):
            if not task.done():
                continue
            del rounds[key]
            task.result()
            self._next_round[round_key] = time.monotonic() + self._settings.amazon_orders_poll_seconds


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def run_worker(settings: IngestSettings, stop: asyncio.Event) -> None:
    async with publisher_and_http(settings) as (publisher, http):
        await AmazonWorker(settings, http, publisher).run(stop)


def main() -> int:
    """``python -m services.ingest amazon worker``: run until SIGTERM/SIGINT."""
    return run_until_signal(run_worker)
