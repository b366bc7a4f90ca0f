"""Subscriptions and notification history, for a seller's engineers (API keys: docs/security.md)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, desc, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier.alerts import Clock
from services.notifier.audit import SUBSCRIPTION_DELETED, SUBSCRIPTION_UPDATED, record_event
from services.notifier.db import as_utc, dialect_insert, outbox, subscriptions
from services.notifier.processing import CHANNEL_SLACK
from services.notifier.settings import NotifierSettings
from shared.credentials.access import KeyGate
from shared.credentials.scopes import Principal, Scope

SellerId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$", description="The seller's id.")]

#: Deliberately simple: one @, no spaces, a dot in the domain. The SMTP server has the last word.
EMAIL_PATTERN = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
MARKETPLACE_PATTERN = re.compile(r"^[A-Z]{2}$")
MAX_EMAILS = 20


def mask_webhook_url(url: str) -> str:
    """Enough to recognise which webhook it is, not enough to post to it."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}/…{url[-4:]}" if len(url) > len(scheme) + len(host) + 8 else f"{scheme}://{host}/…"


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    emails: list[str] = Field(default_factory=list, max_length=MAX_EMAILS)
    slack_webhook_url: str | None = None
    language: Literal["zh-CN", "en"] = "en"
    min_level: Literal["WATCH", "AT_RISK", "BREACH"] = "WATCH"
    marketplaces: list[str] | None = None

    @field_validator("emails")
    @classmethod
    def _valid_emails(cls, emails: list[str]) -> list[str]:
        cleaned = [address.strip() for address in emails]
        for position, address in enumerate(cleaned):
            if len(address) > 254 or not EMAIL_PATTERN.match(address):
                # By position, not by value: what was pasted there may be a secret.
                raise ValueError(f"entry {position} is not an e-mail address")
        return list(dict.fromkeys(cleaned))

    @field_validator("marketplaces")
    @classmethod
    def _valid_marketplaces(cls, marketplaces: list[str] | None) -> list[str] | None:
        if marketplaces is None:
            return None
        cleaned = [code.strip().upper() for code in marketplaces]
        for code in cleaned:
            if not MARKETPLACE_PATTERN.match(code):
                raise ValueError(f"not a two-letter marketplace code: {code[:10]!r}")
        if not cleaned:
            raise ValueError("an empty list would match no marketplace; omit the field for all of them")
        return sorted(set(cleaned))


class SubscriptionOut(BaseModel):
    seller_id: str
    emails: list[str]
    slack_webhook_url: str | None = Field(description="Masked: the full URL is a secret and never returned.")
    language: str
    min_level: str
    marketplaces: list[str] | None
    created_at: datetime
    updated_at: datetime


class NotificationOut(BaseModel):
    id: int
    marketplace: str
    category: str
    kind: str
    previous_level: str
    level: str
    channel: str
    recipient: str
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None
    packages_listed: bool | None


def _unprocessable(location: str, message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"loc": ["body", location], "msg": message, "type": "value_error"}],
    )


def _subscription_out(row: Any) -> SubscriptionOut:
    return SubscriptionOut(
        seller_id=row.seller_id,
        emails=orjson.loads(row.emails),
        slack_webhook_url=mask_webhook_url(row.slack_webhook_url) if row.slack_webhook_url else None,
        language=row.language,
        min_level=row.min_level,
        marketplaces=orjson.loads(row.marketplaces) if row.marketplaces else None,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


def slack_url_problem(url: str, allowed_prefixes: list[str]) -> str | None:
    """Why the URL is refused, or None. The message never repeats the URL (a secret)."""
    if len(url) > 500 or any(character.isspace() or ord(character) < 32 for character in url):
        return "slack_webhook_url is not a plain URL"
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in ("https", "http") or "@" in rest.split("/", 1)[0]:
        return "slack_webhook_url must be an http(s) URL without credentials"
    if not any(url.startswith(prefix) for prefix in allowed_prefixes):
        return f"slack_webhook_url must start with one of {allowed_prefixes}"
    return None


def no_subscription(seller_id: str) -> str:
    return f"no subscription for seller {seller_id}"


def _audited(values: Any) -> dict[str, Any] | None:
    """A subscription as the audit trail keeps it: the Slack URL masked (a secret)."""
    if values is None:
        return None
    return {
        "emails": orjson.loads(values.emails),
        "slack_webhook_url": mask_webhook_url(values.slack_webhook_url) if values.slack_webhook_url else None,
        "language": values.language,
        "min_level": values.min_level,
        "marketplaces": orjson.loads(values.marketplaces) if values.marketplaces else None,
    }


def _check_destinations(body: SubscriptionIn, settings: NotifierSettings) -> None:
    """A subscription names somewhere to send to, and a Slack URL only on the allowlist."""
    if body.slack_webhook_url is not None:
        problem = slack_url_problem(body.slack_webhook_url, settings.slack_allowed_prefixes)
        if problem:
            raise _unprocessable("slack_webhook_url", problem)
    if not body.emails and not body.slack_webhook_url:
        raise _unprocessable("emails", "give at least one e-mail address or a slack_webhook_url")


def subscription_router(settings: NotifierSettings, engine: AsyncEngine, clock: Clock, gate: KeyGate) -> APIRouter:
    router = APIRouter(
        prefix="/v1/sellers/{seller_id}",
        tags=["subscriptions"],
        responses={
            401: {"description": "Missing or invalid bearer token."},
            403: {"description": "The key lacks the scope the route needs."},
            404: {"description": "No such subscription, or a seller the key does not belong to."},
            429: {"description": "The key's rate limit; retry after `Retry-After` seconds."},
        },
    )
    may_write = Depends(gate.require(Scope.SUBSCRIPTIONS_WRITE, no_subscription))
    may_read = Depends(gate.require(Scope.NOTIFICATIONS_READ, no_subscription))

    async def fetch(seller_id: str) -> Any:
        async with engine.connect() as connection:
            return (
                await connection.execute(select(subscriptions).where(subscriptions.c.seller_id == seller_id))
            ).first()

    @router.put("/subscription", response_model=SubscriptionOut)
    async def put_subscription(
        seller_id: SellerId, body: SubscriptionIn, principal: Principal = may_write
    ) -> SubscriptionOut:
        _check_destinations(body, settings)
        now = clock()
        values = {
            "emails": orjson.dumps(body.emails).decode(),
            "slack_webhook_url": body.slack_webhook_url,
            "language": body.language,
            "min_level": body.min_level,
            "marketplaces": orjson.dumps(body.marketplaces).decode() if body.marketplaces is not None else None,
            "updated_at": now,
        }
        async with engine.begin() as connection:
            before = (
                await connection.execute(select(subscriptions).where(subscriptions.c.seller_id == seller_id))
            ).first()
            statement = dialect_insert(connection, subscriptions).values(seller_id=seller_id, created_at=now, **values)
            # The row as written, read in the same statement: a DELETE of the same seller that
            # commits right after must not leave this reply with nothing to show (it was a 500).
            upsert = statement.on_conflict_do_update(index_elements=["seller_id"], set_=values)
            row = (await connection.execute(upsert.returning(*subscriptions.c))).one()
            await record_event(
                connection,
                at=now,
                seller_id=seller_id,
                key_id=principal.key_id,
                action=SUBSCRIPTION_UPDATED,
                changes={"before": _audited(before), "after": _audited(row)},
            )
        return _subscription_out(row)

    @router.get("/subscription", response_model=SubscriptionOut)
    async def get_subscription(seller_id: SellerId, _: Principal = may_read) -> SubscriptionOut:
        row = await fetch(seller_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, no_subscription(seller_id))
        return _subscription_out(row)

    @router.delete("/subscription", status_code=status.HTTP_204_NO_CONTENT)
    async def delete_subscription(seller_id: SellerId, principal: Principal = may_write) -> Response:
        async with engine.begin() as connection:
            before = (
                await connection.execute(
                    delete(subscriptions).where(subscriptions.c.seller_id == seller_id).returning(*subscriptions.c)
                )
            ).first()
            if before is not None:
                await record_event(
                    connection,
                    at=clock(),
                    seller_id=seller_id,
                    key_id=principal.key_id,
                    action=SUBSCRIPTION_DELETED,
                    changes={"before": _audited(before), "after": None},
                )
        if before is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, no_subscription(seller_id))
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.get("/notifications", response_model=list[NotificationOut])
    async def list_notifications(
        seller_id: SellerId,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        notification_status: Annotated[
            Literal["pending", "sent", "failed"] | None, Query(alias="status", description="Only this status.")
        ] = None,
        _: Principal = may_read,
    ) -> list[NotificationOut]:
        query = select(outbox).where(outbox.c.seller_id == seller_id)
        if notification_status is not None:
            query = query.where(outbox.c.status == notification_status)
        async with engine.connect() as connection:
            rows = (await connection.execute(query.order_by(desc(outbox.c.id)).limit(limit))).all()
        return [
            NotificationOut(
                id=row.id,
                marketplace=row.marketplace,
                category=row.category,
                kind=row.kind,
                previous_level=row.previous_level,
                level=row.level,
                channel=row.channel,
                recipient=mask_webhook_url(row.recipient) if row.channel == CHANNEL_SLACK else row.recipient,
                status=row.status,
                attempts=row.attempts,
                created_at=as_utc(row.created_at),
                sent_at=as_utc(row.sent_at) if row.sent_at else None,
                next_attempt_at=as_utc(row.next_attempt_at) if row.status == "pending" else None,
                last_error=row.last_error,
                packages_listed=row.packages_listed,
            )
            for row in rows
        ]

    return router
