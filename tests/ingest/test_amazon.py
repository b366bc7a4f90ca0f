"""Amazon SP-API in the ingest (issue 22), against a local server that answers as Amazon
documents (fake_amazon.py: the models' own sandbox responses) and the real broker: the
connect flow's state, the worker's orders, categories, carrier names and report, the
usage plan's 429, and a revoked authorisation."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY

from services.ingest.amazon.sealing import TokenKeys
from services.ingest.amazon.state import RECONNECT_NEEDED, read_state, summary
from services.ingest.amazon.worker import AmazonWorker
from services.ingest.publisher import Publisher
from services.ingest.settings import IngestSettings
from shared.console_links import sign
from shared.schemas import (
    AMAZON_CODEC,
    SHIPMENT_CODEC,
    AmazonConnectionChanged,
    AmazonVtr,
    AmazonVtrStatus,
    ShipmentCancelled,
    ShipmentConfirmed,
)
from shared.topics import AMAZON_STATE, AMAZON_VTR, SHIPMENTS
from tests.ingest.conftest import AUTH, SettingsFactory, keyed, read_topic, running_ingest
from tests.ingest.fake_amazon import (
    APPLICATION_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    FakeAmazon,
    amazon_server,
    catalog_item,
    mfn_order,
    performance_report,
)
from tests.ingest.samples import unique_number

US, UK, JP = "ATVPDKIKX0DER", "A1F83G8C2ARO7P", "A1VC38T7YXB528"
ROOT = Path(__file__).resolve().parents[2]


def amazon_settings(make_settings: SettingsFactory, amazon: FakeAmazon, **overrides: Any) -> IngestSettings:
    return make_settings(
        lwa_client_id=CLIENT_ID,
        lwa_client_secret=CLIENT_SECRET,
        spapi_application_id=APPLICATION_ID,
        lwa_token_url=f"{amazon.url}/auth/o2/token",
        spapi_endpoint_na=amazon.url,
        spapi_endpoint_eu=amazon.url,
        spapi_endpoint_fe=amazon.url,
        seller_central_consent_url_na="https://sellercentral.example/apps/authorize/consent",
        registration_backoff_seconds=0.05,
        registration_backoff_max_seconds=0.2,
        amazon_orders_poll_seconds=1.0,
        **overrides,
    )


async def connect(client: httpx.AsyncClient, amazon: FakeAmazon, seller: str, region: str = "na") -> str:
    """The website flow: authorize, consent at "Amazon", callback; returns the refresh token issued."""
    answer = await client.get("/v1/amazon/authorize", params={"seller_id": seller, "region": region}, headers=AUTH)
    assert answer.status_code == 302, answer.text
    state = parse_qs(urlsplit(answer.headers["location"]).query)["state"][0]
    code, refresh = f"code-{unique_number()}", f"Atzr|refresh-{unique_number()}"
    amazon.codes[code] = refresh
    back = await client.get(
        "/v1/amazon/callback", params={"state": state, "selling_partner_id": f"SP{seller}", "spapi_oauth_code": code}
    )
    assert back.status_code == 200, back.text
    assert "Amazon is connected" in back.text
    return refresh


@contextlib.asynccontextmanager
async def running_worker(settings: IngestSettings) -> AsyncIterator[AmazonWorker]:
    publisher = Publisher(settings)
    await publisher.start()
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=5) as http:
        worker = AmazonWorker(settings, http, publisher, report_check_seconds=0.05)
        task = asyncio.create_task(worker.run(stop))
        try:
            yield worker
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await publisher.stop()


async def test_the_consent_state_is_signed_single_use_and_bound_to_its_seller(make_settings: SettingsFactory) -> None:
    async with amazon_server() as amazon:
        settings = amazon_settings(make_settings, amazon)
        async with running_ingest(settings) as client:
            seller = f"seller-{unique_number()}"
            assert (await client.get("/v1/amazon/authorize", params={"seller_id": seller})).status_code == 401
            answer = await client.get("/v1/amazon/authorize", params={"seller_id": seller}, headers=AUTH)
            assert answer.status_code == 302
            location = urlsplit(answer.headers["location"])
            assert location.netloc == "sellercentral.example"
            query = parse_qs(location.query)
            assert query["application_id"] == [APPLICATION_ID]
            state = query["state"][0]

            # Moved to another seller: the seller part changed, the signature kept.
            parts = state.split(".")
            parts[1] = base64.urlsafe_b64encode(b"someone-else").rstrip(b"=").decode()
            amazon.codes["code-moved"] = "Atzr|never-issued"
            moved = await client.get(
                "/v1/amazon/callback",
                params={"state": ".".join(parts), "selling_partner_id": "SPX", "spapi_oauth_code": "code-moved"},
            )
            assert moved.status_code == 400 and "not valid" in moved.text
            assert "code-moved" in amazon.codes  # never exchanged

            amazon.codes["code-1"] = "Atzr|refresh-first"
            first = await client.get(
                "/v1/amazon/callback",
                params={"state": state, "selling_partner_id": "SP1", "spapi_oauth_code": "code-1"},
            )
            assert first.status_code == 200 and "what happens next" not in first.text.lower()
            assert "Valid Tracking Rate" in first.text

            # Replayed with a fresh, valid code: refused before Amazon is asked.
            amazon.codes["code-2"] = "Atzr|refresh-second"
            replayed = await client.get(
                "/v1/amazon/callback",
                params={"state": state, "selling_partner_id": "SP1", "spapi_oauth_code": "code-2"},
            )
            assert replayed.status_code == 400 and "already used" in replayed.text
            assert "code-2" in amazon.codes

        # Another ingest instance (its own memory) refuses it too: the connection names its state.
        async with running_ingest(settings) as other:
            amazon.codes["code-3"] = "Atzr|refresh-third"
            elsewhere = await other.get(
                "/v1/amazon/callback",
                params={"state": state, "selling_partner_id": "SP1", "spapi_oauth_code": "code-3"},
            )
            assert elsewhere.status_code == 400 and "already used" in elsewhere.text
            assert "code-3" in amazon.codes
        async with running_ingest(settings) as client:
            expired = TokenKeys.parse(settings.amazon_token_key.get_secret_value()).sign_state(seller, "na", now=0)
            old = await client.get(
                "/v1/amazon/callback",
                params={"state": expired, "selling_partner_id": "SP1", "spapi_oauth_code": "code-2"},
            )
            assert old.status_code == 400 and "expired" in old.text

        records = await read_topic(
            settings, AMAZON_STATE, keyed(f"connection:{seller}:na"), expected=1, settle_seconds=1
        )
        assert len(records) == 1
        assert b"Atzr|refresh-first" not in (records[0].value or b"")  # sealed at rest
        book = await read_state(settings)
        assert book.status((seller, "na")) == "connected"
        connection = book.connections[(seller, "na")]
        keys = TokenKeys.parse(settings.amazon_token_key.get_secret_value())
        assert keys.open(connection.sealed, connection.context) == "Atzr|refresh-first"  # type: ignore[arg-type]


async def test_a_seller_connects_from_its_signed_console_link_without_a_key(make_settings: SettingsFactory) -> None:
    """``GET /v1/amazon/authorize`` takes the seller's signed console link (as the console's
    overview links it) as well as a key: a link of another seller, an altered or expired
    one, or one signed with another secret is refused."""
    secret = "test-console-secret"
    async with amazon_server() as amazon:
        settings = amazon_settings(make_settings, amazon, console_secret=secret)
        seller = f"seller-{unique_number()}"
        now = int(time.time())
        valid = sign(secret.encode(), seller, now + 3600)
        async with running_ingest(settings) as client:
            linked = await client.get("/v1/amazon/authorize", params={"seller_id": seller, "region": "na", "t": valid})
            assert linked.status_code == 302, linked.text
            state = parse_qs(urlsplit(linked.headers["location"]).query)["state"][0]
            # The state it signed is bound to that seller: the callback connects that seller.
            amazon.codes["code-link"] = "Atzr|refresh-from-link"
            back = await client.get(
                "/v1/amazon/callback",
                params={"state": state, "selling_partner_id": "SPLINK", "spapi_oauth_code": "code-link"},
            )
            assert back.status_code == 200 and "Amazon is connected" in back.text

            other = f"seller-{unique_number()}"
            refused = {
                "another seller's link": {"seller_id": other, "t": valid},
                "expired": {"seller_id": seller, "t": sign(secret.encode(), seller, now - 60)},
                "expiry moved": {"seller_id": seller, "t": f"{now + 7200}.{valid.partition('.')[2]}"},
                "another secret": {"seller_id": seller, "t": sign(b"not-the-secret", seller, now + 3600)},
                "garbage": {"seller_id": seller, "t": "x"},
            }
            for case, params in refused.items():
                answer = await client.get("/v1/amazon/authorize", params=params)
                assert answer.status_code == 401, (case, answer.text)
                assert "location" not in answer.headers, case
        book = await read_state(settings)
        assert book.status((seller, "na")) == "connected" and (other, "na") not in book.connections


@pytest.mark.parametrize("concurrent", [2, 1])
async def test_the_worker_serves_sellers_side_by_side_up_to_its_bound(
    make_settings: SettingsFactory, concurrent: int
) -> None:
    """Two connected sellers: with room for two rounds, both sellers' searches are at Amazon
    at once (the fake holds each first search until a second one is in flight, so served one
    after the other they never would be); with ``VTR_AMAZON_CONCURRENT_SELLERS=1``, one at a time."""
    async with amazon_server() as amazon:
        # Long enough that two rounds started together always meet; the bound of 1 waits it out.
        amazon.hold_searches_seconds = 30.0 if concurrent == 2 else 1.0
        settings = amazon_settings(make_settings, amazon, amazon_concurrent_sellers=concurrent)
        sellers = [f"seller-{unique_number()}" for _ in range(2)]
        async with running_ingest(settings) as client:
            for seller in sellers:
                await connect(client, amazon, seller)
        oldest_round_seen = 0.0
        async with running_worker(settings):
            for _ in range(600):
                oldest_round_seen = max(oldest_round_seen, _counter("vtr_ingest_amazon_oldest_round_seconds"))
                if amazon.operations().count("searchOrders") >= 2 and amazon.searches_in_flight == 0:
                    break
                await asyncio.sleep(0.1)
            # Rounds restart every second here (the poll interval): the age goes back down
            # when a round ends, rather than growing from the worker's start.
            for _ in range(100):
                if _counter("vtr_ingest_amazon_oldest_round_seconds") < 0.3:
                    break
                await asyncio.sleep(0.05)
            assert _counter("vtr_ingest_amazon_oldest_round_seconds") < 0.3
        assert amazon.operations().count("searchOrders") >= 2
        assert amazon.most_searches_in_flight == concurrent
        if concurrent == 1:  # each first search was held a second: the running round's age showed it
            assert oldest_round_seen >= 0.5


def _counter(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_a_connected_sellers_orders_become_confirmations_once_with_categories_and_flags(
    make_settings: SettingsFactory,
) -> None:
    seller = f"seller-{unique_number()}"
    numbers = {name: f"YT{uuid.uuid4().int % 10**16:016d}" for name in ("uk", "us", "jp", "cancelled")}
    async with amazon_server() as amazon:
        settings = amazon_settings(make_settings, amazon)
        amazon.catalog = {
            "B0TOY00001": catalog_item("B0TOY00001", UK, "toy_display_on_website"),
            "B0HOME0001": catalog_item("B0HOME0001", US, "kitchen_display_on_website"),
            "B0ODD00001": catalog_item("B0ODD00001", JP, None),
        }
        amazon.order_pages = [
            [
                mfn_order(
                    f"{seller}-uk",
                    marketplace_id=UK,
                    carrier="Yun Express",
                    tracking_number=numbers["uk"],
                    ship_time="2026-12-01T09:00:00Z",
                    deliver_by_latest="2026-12-18T23:59:59Z",
                    asin="B0TOY00001",
                ),
                mfn_order(
                    f"{seller}-us",
                    marketplace_id=US,
                    carrier="Yun express",
                    tracking_number=numbers["us"],
                    ship_time="2026-12-01T09:00:00Z",
                    deliver_by_latest="2026-12-19T07:59:59Z",
                    asin="B0HOME0001",
                    total=("12.00", "USD"),
                ),
            ],
            [
                mfn_order(
                    f"{seller}-jp",
                    marketplace_id=JP,
                    carrier="China Post",
                    tracking_number=numbers["jp"],
                    ship_time="2026-12-01T09:00:00Z",
                    deliver_by_latest="2026-12-18T15:30:00Z",
                    asin="B0ODD00001",
                    total=("2000", "JPY"),
                ),
                mfn_order(
                    f"{seller}-gone",
                    marketplace_id=US,
                    carrier="Yun Express",
                    tracking_number=numbers["cancelled"],
                    ship_time="2026-12-01T09:00:00Z",
                    deliver_by_latest="2026-12-19T07:59:59Z",
                    asin="B0HOME0001",
                    status="CANCELLED",
                ),
            ],
        ]
        amazon.report = performance_report(
            {
                US: {
                    "reportingDateRange": {
                        "reportingDateFrom": "2026-11-01T00:00Z",
                        "reportingDateTo": "2026-11-30T23:59Z",
                    },
                    "shipmentCount": 200,
                    "validTrackingCount": 188,
                    "status": "BAD",
                    "rate": 0.94,
                    "targetValue": 0.95,
                    "targetCondition": "GREATER_THAN",
                },
                UK: {
                    "reportingDateRange": {
                        "reportingDateFrom": "2026-11-01T00:00Z",
                        "reportingDateTo": "2026-11-30T23:59Z",
                    },
                    "shipmentCount": 100,
                    "validTrackingCount": 120,
                    "status": "GOOD",
                    "rate": 0.99,
                    "targetValue": 0.95,
                    "targetCondition": "GREATER_THAN",
                },
            }
        )
        amazon.report_endings = ["FATAL", "DONE"]
        amazon.throttle = 1  # the first call answers 429 with x-amzn-RateLimit-Limit
        flagged_before = _counter(
            "vtr_ingest_amazon_carrier_name_flags_total", {"reason": "carrier_name_not_as_amazon_spells"}
        )
        async with running_ingest(settings) as client:
            # The seller's ERP confirmed the US order itself, with its own category.
            erp = {
                "order_id": f"{seller}-us",
                "seller_id": seller,
                "marketplace": "US",
                "category": "Kitchen gadgets",
                "carrier": "YunExpress",
                "tracking_number": numbers["us"],
                "order_value": {"amount": "12.00", "currency": "USD"},
                "confirmed_at": "2026-12-01T09:30:00Z",
                "promised_delivery_date": "2026-12-18",
            }
            gone = {**erp, "order_id": f"{seller}-gone", "tracking_number": numbers["cancelled"]}
            answer = await client.post("/v1/shipments", json=[erp, gone], headers=AUTH)
            assert answer.status_code == 202, answer.text
            await connect(client, amazon, seller)
        async with running_worker(settings):
            records = await read_topic(
                settings, SHIPMENTS, keyed(*numbers.values()), expected=6, timeout_seconds=30, settle_seconds=4
            )
            vtr_records = await read_topic(settings, AMAZON_VTR, keyed(seller), expected=2, timeout_seconds=30)
        messages = [SHIPMENT_CODEC.decode(record.value or b"") for record in records]
        from_amazon = {m.order_id: m for m in messages if isinstance(m, ShipmentConfirmed) and m.source == "amazon"}
        # Read twice (the second cycle re-reads the overlap): published once each.
        assert sorted(from_amazon) == sorted(f"{seller}-{name}" for name in ("uk", "us", "jp"))
        assert len([m for m in messages if isinstance(m, ShipmentConfirmed) and m.source == "amazon"]) == 3

        cancellations = [m for m in messages if isinstance(m, ShipmentCancelled)]
        assert [(c.order_id, c.tracking_number) for c in cancellations] == [(f"{seller}-gone", numbers["cancelled"])]

        uk, us, jp = (from_amazon[f"{seller}-{name}"] for name in ("uk", "us", "jp"))
        assert (uk.marketplace, uk.category, uk.carrier, uk.carrier_name, uk.risk_flags) == (
            "UK",
            "Toys & Games",
            "yunexpress",
            "Yun Express",
            (),
        )
        assert uk.promised_delivery_date == date(2026, 12, 18)
        # 07:59:59Z on the 19th is still the 18th in Los Angeles; the ERP's category wins.
        assert (us.marketplace, us.promised_delivery_date, us.category) == ("US", date(2026, 12, 18), "Kitchen gadgets")
        assert us.carrier is None and "carrier_name_not_as_amazon_spells" in us.risk_flags
        assert us.order_value.amount == "12.00" and us.order_value.currency == "USD"
        # 15:30Z on the 18th is the 19th in Tokyo; an ASIN the table does not map is Uncategorised.
        assert (jp.marketplace, jp.promised_delivery_date, jp.category) == ("JP", date(2026, 12, 19), "Uncategorised")
        # ... and says why on the package, for the seller to see (not only in the log).
        assert "category_not_mapped" in jp.risk_flags
        assert not {"category_not_mapped", "category_not_in_catalogue"} & {*uk.risk_flags, *us.risk_flags}
        assert (
            _counter("vtr_ingest_amazon_carrier_name_flags_total", {"reason": "carrier_name_not_as_amazon_spells"})
            >= flagged_before + 1
        )

        operations = amazon.operations()
        assert operations.count("createReport") == 2  # FATAL, then retried the next cycle
        # for the marketplaces the seller's orders came from
        assert [sorted(body["marketplaceIds"]) for body in amazon.report_requests] == [sorted([UK, US, JP])] * 2
        searches = [query for name, query, _ in amazon.calls if name == "searchOrders"]
        assert searches[0]["fulfilledBy"] == "MERCHANT" and "PACKAGES" in searches[0]["includedData"]
        assert any(query.get("paginationToken") == "page-1" for query in searches)
        # The next cycle starts where Amazon's answer ended, less the overlap.
        assert any(query["lastUpdatedAfter"] == "2026-12-01T11:50:00Z" for query in searches)
        assert operations.count("getCatalogItem") == 2  # the US item comes from the ERP; cached after

        decoded = [AMAZON_CODEC.decode(r.value or b"") for r in vtr_records]
        figures = {v.marketplace: v for v in decoded if isinstance(v, AmazonVtr)}
        assert figures["US"].rate == 0.94 and figures["US"].status is AmazonVtrStatus.BAD
        assert (figures["US"].shipment_count, figures["US"].valid_tracking_count) == (200, 188)
        assert figures["UK"].problems == ("counts_inconsistent",)  # kept, and said
        assert figures["US"].reporting_from == date(2026, 11, 1) and figures["US"].reporting_to == date(2026, 11, 30)


async def test_a_revoked_authorisation_asks_the_seller_to_reconnect(make_settings: SettingsFactory) -> None:
    seller = f"seller-{unique_number()}"
    async with amazon_server() as amazon:
        settings = amazon_settings(make_settings, amazon)
        async with running_ingest(settings) as client:
            refresh = await connect(client, amazon, seller)
        amazon.refresh_tokens.discard(refresh)  # the seller removed the app in Seller Central
        revoked_before = _counter("vtr_ingest_amazon_authorisations_revoked_total")
        async with running_worker(settings):
            await read_topic(settings, AMAZON_STATE, keyed(f"revoked:{seller}:na"), expected=1, timeout_seconds=20)
            # The connection's own notice first (the audit trail's), then the revocation's.
            connected, notice = [
                AMAZON_CODEC.decode(record.value or b"")
                for record in await read_topic(settings, AMAZON_VTR, keyed(seller), expected=2, timeout_seconds=20)
            ]
        assert isinstance(connected, AmazonConnectionChanged) and connected.state == "connected"
        assert isinstance(notice, AmazonConnectionChanged)
        assert (notice.state, notice.region) == ("reconnect_needed", "na") and "invalid_grant" in notice.reason
        assert _counter("vtr_ingest_amazon_authorisations_revoked_total") >= revoked_before + 1
        book = await read_state(settings)
        assert book.status((seller, "na")) == RECONNECT_NEEDED
        (row,) = summary(book, [(seller, "na")])
        assert row["status"] == RECONNECT_NEEDED and "invalid_grant" in str(row["revoked_reason"])
        assert refresh not in str(row)
        assert "searchOrders" not in amazon.operations()


@pytest.mark.parametrize("name", ["Yun express", "YUN EXPRESS", "yunexpress"])
def test_only_amazons_exact_spelling_passes(name: str) -> None:
    from services.ingest.amazon.orders import check_carrier_name

    assert check_carrier_name("Yun Express").flags == ()
    flagged = check_carrier_name(name)
    assert flagged.slug is None and flagged.flags == ("carrier_name_not_as_amazon_spells",)
    assert "'Yun Express'" in flagged.advice


async def _cli(settings: IngestSettings, amazon: FakeAmazon, *args: str) -> tuple[int, str, str]:
    """``python -m services.ingest amazon ...`` as an operator runs it (its own process)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VTR_")},
        "VTR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "VTR_LWA_CLIENT_ID": CLIENT_ID,
        "VTR_LWA_CLIENT_SECRET": CLIENT_SECRET,
        "VTR_LWA_TOKEN_URL": f"{amazon.url}/auth/o2/token",
        "VTR_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.ingest",
        "amazon",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_operator_connects_checks_status_and_disconnects(make_settings: SettingsFactory, tmp_path: Path) -> None:
    seller = f"seller-{unique_number()}"
    token_file = tmp_path / "refresh-token"
    async with amazon_server() as amazon:
        settings = amazon_settings(make_settings, amazon)
        token_file.write_text("Atzr|not-issued-by-amazon\n")
        code, _, err = await _cli(
            settings,
            amazon,
            "connect",
            "--seller",
            seller,
            "--selling-partner-id",
            "SPOP",
            "--region",
            "eu",
            "--refresh-token-file",
            str(token_file),
        )
        assert code == 1 and "invalid_grant" in err and "Atzr" not in err
        amazon.refresh_tokens.add("Atzr|operator-token")
        token_file.write_text("Atzr|operator-token\n")
        code, out, err = await _cli(
            settings,
            amazon,
            "connect",
            "--seller",
            seller,
            "--selling-partner-id",
            "SPOP",
            "--region",
            "eu",
            "--refresh-token-file",
            str(token_file),
        )
        assert code == 0, err
        code, out, _ = await _cli(settings, amazon, "status", "--seller", seller)
        (row,) = orjson.loads(out)
        assert (row["status"], row["connected_via"], row["region"], row["token_key_id"]) == (
            "connected",
            "operator",
            "eu",
            "dev-local",
        )
        assert "operator-token" not in out
        code, out, _ = await _cli(settings, amazon, "disconnect", "--seller", seller, "--region", "eu")
        assert code == 0
        code, out, _ = await _cli(settings, amazon, "status", "--seller", seller)
        assert orjson.loads(out)[0]["status"] == "disconnected"
        book = await read_state(settings)
        assert book.connections[(seller, "eu")].sealed is None  # the token is dropped, not kept


async def test_a_draft_apps_consent_url_keeps_its_query(make_settings: SettingsFactory) -> None:
    async with amazon_server() as amazon:
        settings = amazon_settings(make_settings, amazon).model_copy(
            update={
                "seller_central_consent_url_fe": "https://sellercentral.amazon.co.jp/apps/authorize/consent?version=beta"
            }
        )
        async with running_ingest(settings) as client:
            answer = await client.get("/v1/amazon/authorize", params={"seller_id": "S1", "region": "fe"}, headers=AUTH)
            refused = await client.get("/v1/amazon/authorize", params={"seller_id": "S1", "region": "xx"}, headers=AUTH)
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["version"] == ["beta"] and query["application_id"] == [APPLICATION_ID] and query["state"]
    assert answer.json()["consent_url"] == answer.headers["location"]
    assert refused.status_code == 422
