"""The audit trail: who issued or revoked which key, who changed which subscription, when.

The notifier keeps it because it already holds a database and the subscriptions (whose
changes are written in the same transaction as the change itself), and because every
service follows the credentials topic anyway: the key events are derived from the
topic's records, idempotently (a deterministic ``event_id`` per key and action), so a
notifier that was down when a key was issued writes the event when it reads the topic
again at start-up. Other services' events (Amazon connections) go through
:func:`record_event` in the notifier or, from another service, through an API of its own.
"""

from __future__ import annotations

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

KEY_ISSUED = "key.issued"
KEY_REVOKED = "key.revoked"
SUBSCRIPTION_UPDATED = "subscription.updated"
SUBSCRIPTION_DELETED = "subscription.deleted"


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
