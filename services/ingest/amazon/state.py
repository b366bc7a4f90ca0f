"""The Amazon side's own state, kept on the compacted topic ``vtr.amazon-state.v1`` (the
ingest keeps no database: like its other workers, it keeps what it needs on Kafka).

Three kinds of record, each keyed so compaction keeps the newest one:

- ``connection:<seller>:<region>`` (:class:`Connection`): who connected which selling
  partner, and the refresh token sealed (sealing.py); written by the callback, the
  operator's ``amazon connect`` and ``amazon disconnect`` (which drops the token).
- ``progress:<seller>:<region>`` (:class:`Progress`): the orders cursor and when the last
  performance report ran and how it ended; written by the worker.
- ``revoked:<seller>:<region>`` (:class:`Revocation`): the worker found the token revoked.
  A separate key, so that a reconnect written meanwhile is never overwritten by the worker;
  it applies only to the token it names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec
from aiokafka import TopicPartition

from services.ingest.amazon.marketplaces import Region
from services.ingest.amazon.sealing import SealedToken
from services.ingest.publisher import Record
from services.ingest.settings import IngestSettings
from shared.kafka import make_consumer
from shared.schemas import RECONNECT_NEEDED, UtcDateTime
from shared.topics import AMAZON_STATE

CONNECTED = "connected"
DISCONNECTED = "disconnected"
__all__ = ["CONNECTED", "DISCONNECTED", "RECONNECT_NEEDED"]


class Connection(msgspec.Struct, frozen=True, kw_only=True, tag="connection", tag_field="type"):
    seller_id: str
    region: Region
    selling_partner_id: str
    changed_at: UtcDateTime
    #: None once disconnected (the token is dropped, not kept).
    token_key_id: str | None = None
    token_nonce: str | None = None
    token_ciphertext: str | None = None
    #: ``consent`` (the website flow) or ``operator`` (``amazon connect``).
    via: str = "consent"
    #: The consent state's nonce that made this connection (single use).
    state_nonce: str = ""

    @property
    def sealed(self) -> SealedToken | None:
        if self.token_key_id is None or self.token_nonce is None or self.token_ciphertext is None:
            return None
        return SealedToken(self.token_key_id, self.token_nonce, self.token_ciphertext)

    @property
    def context(self) -> str:
        """What the sealed token is bound to (the cipher's associated data)."""
        return f"{self.seller_id}|{self.selling_partner_id}|{self.region}"


class Progress(msgspec.Struct, frozen=True, kw_only=True, tag="progress", tag_field="type"):
    seller_id: str
    region: str
    #: searchOrders' next ``lastUpdatedAfter`` (already moved back by the overlap).
    orders_after: UtcDateTime | None = None
    orders_polled_at: UtcDateTime | None = None
    report_at: UtcDateTime | None = None
    #: DONE, CANCELLED, FATAL, or ``failed: ...``; a FATAL or failed report is asked again next cycle.
    report_outcome: str = ""
    #: Marketplace ids the seller's orders were placed in (the report asks for these).
    marketplaces: tuple[str, ...] = ()


class Revocation(msgspec.Struct, frozen=True, kw_only=True, tag="revoked", tag_field="type"):
    seller_id: str
    region: str
    #: The nonce of the sealed token found revoked: a newer connection is not affected.
    token_nonce: str
    revoked_at: UtcDateTime
    reason: str


StateRecord = Connection | Progress | Revocation
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(StateRecord)


_KEY_PREFIX: dict[type, str] = {Connection: "connection", Progress: "progress", Revocation: "revoked"}


def state_record(record: StateRecord) -> Record:
    key = f"{_KEY_PREFIX[type(record)]}:{record.seller_id}:{record.region}"
    return Record(AMAZON_STATE, key.encode(), _ENCODER.encode(record))


@dataclass
class StateBook:
    """The newest record of each key, as read from the topic."""

    connections: dict[tuple[str, str], Connection] = field(default_factory=dict)
    progress: dict[tuple[str, str], Progress] = field(default_factory=dict)
    revocations: dict[tuple[str, str], Revocation] = field(default_factory=dict)

    def apply(self, payload: bytes | None) -> None:
        if not payload:
            return
        try:
            record = _DECODER.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return  # a record of a newer worker version: skip, never crash on it
        key = (record.seller_id, record.region)
        if isinstance(record, Connection):
            self.connections[key] = record
        elif isinstance(record, Progress):
            self.progress[key] = record
        else:
            self.revocations[key] = record

    def status(self, key: tuple[str, str]) -> str:
        connection = self.connections.get(key)
        if connection is None or connection.sealed is None:
            return DISCONNECTED
        revoked = self.revocations.get(key)
        if revoked is not None and revoked.token_nonce == connection.token_nonce:
            return RECONNECT_NEEDED
        return CONNECTED

    def active(self) -> list[Connection]:
        return [c for key, c in sorted(self.connections.items()) if self.status(key) == CONNECTED]

    def used_state_nonces(self) -> set[str]:
        return {c.state_nonce for c in self.connections.values() if c.state_nonce}


async def read_state(settings: IngestSettings) -> StateBook:
    """Everything on the state topic up to its end now (the operator commands, start-up)."""
    book = StateBook()
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()  # fetches the cluster's metadata
        numbers = consumer.partitions_for_topic(AMAZON_STATE) or set()
        partitions = [TopicPartition(AMAZON_STATE, number) for number in sorted(numbers)]
        if not partitions:
            return book
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)

        async def behind() -> bool:
            for partition in partitions:
                if await consumer.position(partition) < ends[partition]:
                    return True
            return False

        while await behind():
            batches = await consumer.getmany(*partitions, timeout_ms=500)
            for records in batches.values():
                for record in records:
                    book.apply(record.value)
    finally:
        await consumer.stop()
    return book


def summary(book: StateBook, keys: Iterable[tuple[str, str]] | None = None) -> list[dict[str, object]]:
    """What ``amazon status`` prints: never a token, only which key sealed it."""
    rows: list[dict[str, object]] = []
    for key in sorted(keys if keys is not None else book.connections):
        connection = book.connections.get(key)
        progress = book.progress.get(key)
        revoked = book.revocations.get(key)
        rows.append(
            {
                "seller_id": key[0],
                "region": key[1],
                "status": book.status(key),
                "selling_partner_id": connection.selling_partner_id if connection else None,
                "connected_via": connection.via if connection else None,
                "changed_at": connection.changed_at.isoformat() if connection else None,
                "token_key_id": connection.token_key_id if connection else None,
                "orders_after": progress.orders_after.isoformat() if progress and progress.orders_after else None,
                "report_at": progress.report_at.isoformat() if progress and progress.report_at else None,
                "report_outcome": progress.report_outcome if progress else "",
                "revoked_reason": revoked.reason if revoked and book.status(key) == RECONNECT_NEEDED else "",
            }
        )
    return rows
