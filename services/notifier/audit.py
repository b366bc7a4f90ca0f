"""The audit trail: who issued or revoked which key, who changed which subscription, when.

The notifier keeps it because it already holds a database and the subscriptions (whose
changes are written in the same transaction as the change itself), and because every
service follows the credentials topic anyway: the key events are derived from the
topic's records, idempotently (a deterministic ``event_id`` per key and action), so a
notifier that was down when a key was issued writes the event when it reads the topic
again at start-up. The ingest's Amazon connections arrive the same way: each change
(connected through the consent callback or by an operator, disconnected, authorisation
refused by Amazon) is an ``AmazonConnectionChanged`` notice on ``vtr.amazon-vtr.v1``,
which the notifier already reads for its reconnect messages; its audit row is written in
that consumer's transaction, with an ``event_id`` derived from the notice (a notice read
again writes nothing twice).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel
from sqlalchemy import desc, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.notifier.db import as_utc, audit_events, dialect_insert
from shared.credentials.access import KeyGate
from shared.credentials.scopes import Principal, Scope
from shared.credentials.tokens import CredentialRecord
from shared.schemas import AmazonConnectionChanged

KEY_ISSUED = "key.issued"
KEY_REVOKED = "key.revoked"
SUBSCRIPTION_UPDATED = "subscription.updated"
SUBSCRIPTION_DELETED = "subscription.deleted"
#: Followed by the notice's state: ``amazon.connected``, ``amazon.disconnected``,
#: ``amazon.reconnect_needed``.
AMAZON_PREFIX = "amazon."


class AuditEventOut(BaseModel):
    at: datetime
    seller_id: str | None
    key_id: str
    action: str
    changes: dict[str, Any]


def credential_events(record: CredentialRecord) -> list[dict[str, Any]]:
    """The audit rows a credentials record stands for (issue, and revocation if any)."""
    issued = {
        "kind": record.kind,
        "scopes": record.scopes,
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        "label": record.label,
        "by": record.issued_by,
    }
    events = [_row(f"{KEY_ISSUED}:{record.key_id}", record.issued_at, record, KEY_ISSUED, issued)]
    if record.revoked_at is not None:
        revoked = {"by": record.revoked_by}
        events.append(_row(f"{KEY_REVOKED}:{record.key_id}", record.revoked_at, record, KEY_REVOKED, revoked))
    return events


def _row(event_id: str, at: datetime, record: CredentialRecord, action: str, changes: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "at": at,
        "seller_id": record.seller_id,
        "key_id": record.key_id,
        "action": action,
        "changes": orjson.dumps(changes).decode(),
    }


async def record_event(
    connection: AsyncConnection,
    *,
    at: datetime,
    seller_id: str | None,
    key_id: str,
    action: str,
    changes: dict[str, Any],
    event_id: str | None = None,
) -> None:
    """Write one event inside the caller's transaction (the change and its record commit together)."""
    row = {
        "event_id": event_id or uuid.uuid4().hex,
        "at": at,
        "seller_id": seller_id,
        "key_id": key_id,
        "action": action,
        "changes": orjson.dumps(changes, default=str).decode(),
    }
    await connection.execute(dialect_insert(connection, audit_events).values(**row).on_conflict_do_nothing())


async def record_amazon_connections(connection: AsyncConnection, notices: list[AmazonConnectionChanged]) -> None:
    """One audit row per Amazon connection notice, inside the consumer's transaction."""
    for notice in notices:
        identity = "\x1f".join((notice.seller_id, notice.region, notice.state, notice.changed_at.isoformat()))
        await record_event(
            connection,
            event_id=f"{AMAZON_PREFIX}{hashlib.sha256(identity.encode()).hexdigest()[:64]}",
            at=notice.changed_at,
            seller_id=notice.seller_id,
            key_id=notice.by[:64] or "amazon",
            action=(AMAZON_PREFIX + notice.state)[:48],
            changes={
                "region": notice.region,
                "state": notice.state,
                "selling_partner_id": notice.selling_partner_id or None,
                "via": notice.via or None,
                "reason": notice.reason[:500],
            },
        )


def credential_recorder(engine: AsyncEngine) -> Any:
    """The follower's hook: a credentials record becomes its audit rows (once)."""

    async def record(credential: CredentialRecord) -> None:
        async with engine.begin() as connection:
            for row in credential_events(credential):
                await connection.execute(
                    dialect_insert(connection, audit_events).values(**row).on_conflict_do_nothing()
                )

    return record


def audit_router(engine: AsyncEngine, gate: KeyGate) -> APIRouter:
    router = APIRouter(prefix="/v1/audit", tags=["audit"])
    may_read = Depends(gate.require(Scope.AUDIT_READ))

    @router.get("", response_model=list[AuditEventOut], summary="The audit trail (staff: any seller; sellers: own)")
    async def read_audit(
        seller: Annotated[str | None, Query(min_length=1, max_length=128, description="Only this seller.")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        principal: Principal = may_read,
    ) -> list[AuditEventOut]:
        if principal.seller_id is not None:
            if seller is not None and seller != principal.seller_id:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no audit events for seller {seller}")
            seller = principal.seller_id
        query = select(audit_events)
        if seller is not None:
            query = query.where(audit_events.c.seller_id == seller)
        async with engine.connect() as connection:
            rows = (await connection.execute(query.order_by(desc(audit_events.c.id)).limit(limit))).all()
        return [
            AuditEventOut(
                at=as_utc(row.at),
                seller_id=row.seller_id,
                key_id=row.key_id,
                action=row.action,
                changes=orjson.loads(row.changes),
            )
            for row in rows
        ]

    return router
