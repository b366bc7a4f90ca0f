"""The website connect flow: ``GET /v1/amazon/authorize`` sends the seller to Seller
Central's consent page with a signed ``state``; ``GET /v1/amazon/callback`` is where
Amazon sends the seller back (docs/amazon.md, "Connecting").

The callback checks the state (signed by vtrwatch, bound to one seller and region, not
expired, not used before), exchanges ``spapi_oauth_code`` at Login with Amazon for the
refresh token, seals it (sealing.py) and puts the connection on the state topic, where
the worker picks it up. The seller sees a page saying what happens next. A state is
refused a second time by the instance that accepted it (in memory) and by any instance
once the connection it made is on the state topic; two callbacks racing on two instances
are left to Amazon, whose code is single-use and valid for five minutes.
"""

from __future__ import annotations

import html
import logging
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, Response

from services.ingest.amazon.client import AmazonError, AuthorisationRevoked, LoginWithAmazon
from services.ingest.amazon.marketplaces import Region
from services.ingest.amazon.notices import AMAZON, connection_changed
from services.ingest.amazon.sealing import STATE_LIFETIME_SECONDS, SealError, TokenKeys, verify_state
from services.ingest.amazon.state import Connection, read_state, state_record
from services.ingest.api.edge import json_response
from services.ingest.publisher import BrokerUnavailable, Publisher
from services.ingest.settings import IngestSettings
from services.ingest.vendor_calls import Retryable
from shared.credentials.access import KeyGate
from shared.credentials.scopes import Scope as KeyScope

log = logging.getLogger(__name__)

SellerId = Annotated[str, Query(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
Param = Annotated[str, Query(min_length=1, max_length=2000)]


def seller_access(gate: KeyGate, console_secret: bytes) -> Any:
    """Who may start a seller's connection: a key with ``shipments:write`` (the connection
    writes the seller's orders in), a seller key for its own seller only (docs/security.md);
    or the seller's signed console link (``?t=``, or the console's cookie), so that a seller
    without an ERP key connects from its console's overview. A link opens its own seller only."""
    return gate.key_or_console_link(KeyScope.SHIPMENTS_WRITE, console_secret)


class UsedStates:
    """Nonces of states already accepted by this process (kept past their expiry)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def claim(self, nonce: str) -> bool:
        """True the first time ``nonce`` is claimed, False ever after."""
        if nonce in self._seen:
            return False
        self._seen[nonce] = None
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True

    def release(self, nonce: str) -> None:
        """Give a nonce back when the exchange failed on vtrwatch's side (Amazon down)."""
        self._seen.pop(nonce, None)


def _page(title: str, paragraphs: list[str], status: int) -> HTMLResponse:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return HTMLResponse(
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)}</title>"
        "<body style='font-family:sans-serif;max-width:40em;margin:3em auto'>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def _next_steps(settings: IngestSettings) -> list[str]:
    minutes = round(settings.amazon_orders_poll_seconds / 60)
    return [
        "Within a few minutes vtrwatch reads your merchant-fulfilled orders of the last 30 days from Amazon,"
        f" and then every {minutes} minutes the orders that changed: each shipped package is scored for"
        " Valid Tracking Rate by marketplace and category, as if your ERP had confirmed it.",
        "Today, and then once a day, vtrwatch also asks Amazon for your seller performance report and shows"
        " Amazon's own Valid Tracking Rate beside vtrwatch's on your console's overview.",
        "A carrier name that Amazon's carrier list spells differently is flagged the day it arrives, with the fix.",
        "Nothing is written to your Amazon account. You can remove vtrwatch at any time in Seller Central"
        " (Apps and Services, Manage Your Apps); vtrwatch then stops reading and tells you.",
    ]


def amazon_router(settings: IngestSettings, publisher: Publisher, gate: KeyGate) -> APIRouter:
    router = APIRouter(prefix="/v1/amazon", tags=["amazon"])
    keys = TokenKeys.parse(settings.amazon_token_key.get_secret_value())
    used = UsedStates()

    @router.get(
        "/authorize",
        status_code=302,
        summary="Send a seller to Seller Central to authorise vtrwatch (302 to the consent page)",
        dependencies=[Depends(seller_access(gate, settings.console_secret.get_secret_value().encode()))],
        responses={
            401: {"description": "Missing or invalid bearer token, and no valid signed console link."},
            503: {"description": "Not set up."},
        },
    )
    async def authorize(seller_id: SellerId, region: Region = "na") -> Response:
        if not settings.spapi_application_id or not settings.lwa_client_id:
            return json_response(
                {"detail": "Amazon is not set up here (VTR_SPAPI_APPLICATION_ID, VTR_LWA_CLIENT_ID)"}, 503
            )
        state = keys.sign_state(seller_id, region)
        query = urlencode({"application_id": settings.spapi_application_id, "state": state})
        consent = settings.seller_central_consent_url(region)
        url = f"{consent}{'&' if '?' in consent else '?'}{query}"
        return json_response({"consent_url": url, "expires_in_seconds": STATE_LIFETIME_SECONDS}, 302, {"Location": url})

    @router.get(
        "/callback", summary="Where Seller Central sends the seller back after consent", response_class=HTMLResponse
    )
    async def callback(
        state: Param | None = None,
        selling_partner_id: Param | None = None,
        spapi_oauth_code: Param | None = None,
    ) -> Response:
        if not state or not selling_partner_id or not spapi_oauth_code:
            return _page(
                "Amazon did not complete the authorisation",
                ["The link back from Amazon lacks its code. Start again from the connect link vtrwatch gave you."],
                400,
            )
        try:
            consent = verify_state(keys, state)
        except (SealError, ValueError) as error:
            return _page(
                "This authorisation link is not valid", [str(error), "Start again from the connect link."], 400
            )
        already_used = _page(
            "This authorisation link was already used",
            ["Each link connects once. Start again from the connect link if you want to connect again."],
            400,
        )
        if not used.claim(consent.nonce):
            return already_used
        try:
            # Another ingest instance may have accepted it: the connections on the state topic
            # name the state that made them (a seller connecting is rare; reading is cheap).
            book = await read_state(settings)
        except (KafkaError, OSError) as error:
            used.release(consent.nonce)
            log.warning("state topic unreadable", extra={"problem": type(error).__name__})
            return _page("vtrwatch could not check the link", ["Try the same link again in a minute."], 503)
        if consent.nonce in book.used_state_nonces():
            return already_used
        async with httpx.AsyncClient(timeout=settings.registration_timeout_seconds) as http:
            lwa = LoginWithAmazon(
                http, settings.lwa_token_url, settings.lwa_client_id, settings.lwa_client_secret.get_secret_value()
            )
            try:
                refresh_token = await lwa.exchange_code(spapi_oauth_code)
            except AuthorisationRevoked:
                return _page(
                    "Amazon refused the authorisation code",
                    ["The code expired or was used already (Amazon's codes last five minutes). Start again."],
                    400,
                )
            except (Retryable, AmazonError) as error:
                used.release(consent.nonce)
                log.warning("LWA code exchange failed", extra={"problem": str(error), "seller_id": consent.seller_id})
                return _page("Amazon could not be reached", ["Try the same link again in a minute."], 503)
        sealed = keys.seal(refresh_token, f"{consent.seller_id}|{selling_partner_id}|{consent.region}")
        connection = Connection(
            seller_id=consent.seller_id,
            region=consent.region,
            selling_partner_id=selling_partner_id,
            changed_at=datetime.now(UTC),
            token_key_id=sealed.key_id,
            token_nonce=sealed.nonce,
            token_ciphertext=sealed.ciphertext,
            via="consent",
            state_nonce=consent.nonce,
        )
        try:
            await publisher.publish(
                [
                    state_record(connection),
                    connection_changed(connection, AMAZON, "the seller consented in Seller Central"),
                ]
            )
        except BrokerUnavailable:
            used.release(consent.nonce)
            return _page("vtrwatch could not save the connection", ["Try the same link again in a minute."], 503)
        log.info("seller connected Amazon", extra={"seller_id": consent.seller_id, "region": consent.region})
        return _page("Amazon is connected to vtrwatch", _next_steps(settings), 200)

    return router
