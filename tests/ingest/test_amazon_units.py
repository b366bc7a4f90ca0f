"""Pure parts of the Amazon integration: sealed tokens and their key rotation, the consent
state, promised dates in the marketplace's zone, categories from the sandbox's catalogue
answer, the performance report read defensively, and the prod refusal of dev secrets."""

from __future__ import annotations

import base64
import copy
import time
from datetime import UTC, date, datetime

import orjson
import pytest

from services.ingest.amazon.client import UsagePlans, jittered
from services.ingest.amazon.marketplaces import MARKETPLACES
from services.ingest.amazon.orders import CategoryTable, category_of, confirmation_of, promised_date, shipped_package
from services.ingest.amazon.reports import ReportProblem, parse_performance_report
from services.ingest.amazon.sealing import SealError, TokenKeys, verify_state
from services.ingest.settings import IngestSettings
from services.ingest.vendor_calls import RetryPolicy
from tests.ingest.fake_amazon import SANDBOX, mfn_order

OLD = "k2026:" + base64.b64encode(b"o" * 32).decode()
NEW = "k2027:" + base64.b64encode(b"n" * 32).decode()
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_sealed_tokens_open_after_rotation_and_only_for_their_seller() -> None:
    old = TokenKeys.parse(OLD)
    sealed = old.seal("Atzr|secret-refresh", "seller-a|SPA|na")
    assert "secret" not in sealed.ciphertext and sealed.key_id == "k2026"
    rotated = TokenKeys.parse(f"{NEW},{OLD}")
    assert rotated.open(sealed, "seller-a|SPA|na") == "Atzr|secret-refresh"
    assert rotated.seal("x", "c").key_id == "k2027"
    with pytest.raises(SealError):
        rotated.open(sealed, "seller-b|SPA|na")  # copied onto another seller's record
    with pytest.raises(SealError, match="no longer holds"):
        TokenKeys.parse(NEW).open(sealed, "seller-a|SPA|na")


@pytest.mark.parametrize("setting", ["", "k1", "k1:short", "k1:" + base64.b64encode(b"x" * 16).decode(), ":" + OLD[6:]])
def test_a_token_key_setting_of_the_wrong_form_is_refused(setting: str) -> None:
    with pytest.raises(ValueError, match="VTR_AMAZON_TOKEN_KEY"):
        TokenKeys.parse(setting)


def test_the_state_is_bound_to_seller_region_and_expiry() -> None:
    keys = TokenKeys.parse(OLD)
    state = keys.sign_state("seller-a", "eu", now=1000)
    consent = verify_state(keys, state, now=1500)
    assert (consent.seller_id, consent.region) == ("seller-a", "eu")
    with pytest.raises(SealError, match="expired"):
        verify_state(keys, state, now=1000 + 601)
    for index in (1, 2, 4):  # seller, region, expiry
        parts = state.split(".")
        parts[index] = parts[index][:-1] + ("A" if parts[index][-1] != "A" else "B")
        with pytest.raises(SealError):
            verify_state(keys, ".".join(parts), now=1500)
    with pytest.raises(SealError):
        verify_state(TokenKeys.parse(NEW), state, now=1500)  # another key signed it


@pytest.mark.parametrize(
    ("marketplace_id", "latest", "expected"),
    [
        ("ATVPDKIKX0DER", "2026-12-19T07:59:59Z", date(2026, 12, 18)),  # Pacific
        ("A1F83G8C2ARO7P", "2026-12-18T23:59:59Z", date(2026, 12, 18)),  # London in winter
        ("A1VC38T7YXB528", "2026-12-18T15:30:00Z", date(2026, 12, 19)),  # Tokyo
        ("A2VIGQ35RCS4UG", "2026-12-18T21:00:00+00:00", date(2026, 12, 19)),  # Dubai, +04:00
    ],
)
def test_promised_date_is_the_latest_instant_as_the_marketplaces_local_date(
    marketplace_id: str, latest: str, expected: date
) -> None:
    order = copy.deepcopy(SANDBOX["searchOrders"][1]["orders"][0])
    order["fulfillment"]["deliverByWindow"]["latestDateTime"] = latest
    assert promised_date(order, MARKETPLACES[marketplace_id]) == expected


def test_the_sandbox_catalogue_item_maps_through_the_table() -> None:
    table = CategoryTable.load()
    item = SANDBOX["getCatalogItem"][0]  # home_theater_display_on_website, browse root Electronics
    assert category_of(item, "ATVPDKIKX0DER", table).category == "Electronics"
    nowhere = category_of(item, "A1VC38T7YXB528", table)
    assert nowhere.category == "Uncategorised" and "no summary" in nowhere.reason
    assert nowhere.flag == "category_not_in_catalogue"  # the package says why (docs/amazon.md)
    unknown = copy.deepcopy(item)
    unknown["summaries"][0]["websiteDisplayGroup"] = "gift_card_display_on_website"
    unknown["classifications"] = []
    unknown["summaries"][0]["browseClassification"] = {"displayName": "Gift Cards", "classificationId": "1"}
    answer = category_of(unknown, "ATVPDKIKX0DER", table)
    assert answer.category == "Uncategorised" and "gift_card_display_on_website" in answer.reason
    assert answer.flag == "category_not_mapped"
    assert category_of(item, "ATVPDKIKX0DER", table).flag == ""


def test_the_schemas_own_example_is_read_with_its_inconsistency_said() -> None:
    example = SANDBOX["accountHealthReport_example"]
    (figure,) = parse_performance_report(orjson.dumps(example), "seller-a", "R1", NOW)
    assert (figure.marketplace, figure.rate, figure.status.value) == ("US", 0.9529, "GOOD")
    assert (figure.shipment_count, figure.valid_tracking_count) == (878443, 896462)
    assert figure.problems == ("counts_inconsistent",)
    assert (figure.reporting_from, figure.reporting_to) == (date(2020, 10, 11), date(2020, 11, 9))


def test_a_report_with_odd_fields_is_read_around_and_a_non_report_refused() -> None:
    odd = {
        "performanceMetrics": [
            {"marketplaceId": "A1PA6795UKMFR9", "validTrackingRate": {"rate": "96.5", "status": "WEIRD"}},
            {"marketplaceId": "UNKNOWN", "validTrackingRate": {"rate": 0.9}},
            {"marketplaceId": "A1F83G8C2ARO7P"},
            "not an entry",
        ]
    }
    (figure,) = parse_performance_report(orjson.dumps(odd), "seller-a", "R2", NOW)
    assert figure.marketplace == "DE" and figure.rate == pytest.approx(0.965)
    assert set(figure.problems) == {"rate_given_in_percent", "status_unknown", "reporting_range_unreadable"}
    for body in (b"not json", b"[]", b'{"accountStatuses": []}'):
        with pytest.raises(ReportProblem):
            parse_performance_report(body, "seller-a", "R3", NOW)


def test_prod_refuses_the_dev_token_key_once_amazon_is_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "VTR_ENV": "prod",
        "VTR_DATABASE_URL": "postgresql+asyncpg://x/y",
        "VTR_API_KEYS": "prod-key",
        "VTR_CHINAPOST_SM4_KEY": "00112233445566778899aabbccddeeff",
        "VTR_CHINAPOST_DIGEST_KEY": "prod-1",
        "VTR_YUNEXPRESS_SECRET": "prod-2",
        "VTR_YANWEN_TOKEN": "prod-3",
        "VTR_17TRACK_API_KEY": "prod-4",
        "VTR_AFTERSHIP_SECRET": "prod-5",
    }.items():
        monkeypatch.setenv(name, value)
    IngestSettings()  # Amazon not set up: its secrets are not asked for
    monkeypatch.setenv("VTR_LWA_CLIENT_ID", "amzn1.application-oa2-client.prod")
    with pytest.raises(ValueError) as refused:
        IngestSettings()
    assert "VTR_AMAZON_TOKEN_KEY" in str(refused.value) and "VTR_LWA_CLIENT_SECRET" in str(refused.value)
    # A dev console secret would let anyone sign a link that starts a seller's connection.
    assert "VTR_CONSOLE_SECRET" in str(refused.value)
    assert "dev-local" not in str(refused.value)
    monkeypatch.setenv("VTR_LWA_CLIENT_SECRET", "prod-lwa")
    monkeypatch.setenv("VTR_AMAZON_TOKEN_KEY", NEW)
    monkeypatch.setenv("VTR_CONSOLE_SECRET", "prod-console-secret")
    assert IngestSettings().lwa_client_id


async def test_usage_plan_follows_amazons_rate_header_and_spends_its_burst() -> None:
    plans = UsagePlans()
    bucket = plans.bucket("SP1", "na", "getReport")  # 2/s, burst 15
    assert (bucket.rate, bucket.burst) == (2.0, 15)
    assert plans.bucket("SP2", "na", "getReport") is not bucket  # per seller
    bucket.rerate("20.0")
    assert bucket.rate == 20.0
    bucket.rerate("not a number")
    bucket.rerate(None)
    assert bucket.rate == 20.0
    started = time.monotonic()
    for _ in range(15 + 10):  # the burst at once, then 10 more at 20/s
        await bucket.acquire()
    assert 0.4 <= time.monotonic() - started < 2.0


def test_back_off_is_jittered_below_the_exponential_delay() -> None:
    policy = jittered(RetryPolicy(attempts=6, backoff_seconds=2.0, backoff_max_seconds=300.0))
    delays = [policy.delay(3) for _ in range(200)]
    assert all(0 <= delay <= 8.0 for delay in delays)
    assert len({round(delay, 3) for delay in delays}) > 100  # not one fixed wait


def test_the_worker_keeps_only_recent_confirmations_in_memory() -> None:
    from services.ingest.amazon.worker import Orders
    from shared.schemas import SHIPMENT_CODEC, Money, ShipmentConfirmed

    def confirmation(order: str, promised: date) -> bytes:
        return SHIPMENT_CODEC.encode(
            ShipmentConfirmed(
                order_id=order, seller_id="S1", marketplace="US", category="Toys", carrier_name="USPS",
                carrier="usps", tracking_number=f"T{order}", order_value=Money("5.00", "USD"),
                confirmed_at=NOW, promised_delivery_date=promised, received_at=NOW,
            )
        )  # fmt: skip

    orders = Orders()
    orders.apply(confirmation("old", date(2026, 10, 1)), oldest=date(2026, 10, 23))
    orders.apply(confirmation("recent", date(2026, 11, 20)), oldest=date(2026, 10, 23))
    assert set(orders.by_order) == {("S1", "recent")}
    orders.prune(date(2026, 11, 21))
    assert orders.by_order == {}


def _package(reference: str, status: str, ship_time: str | None, number: str | None) -> dict[str, object]:
    package: dict[str, object] = {
        "packageReferenceId": reference,
        "createdTime": "2026-12-01T08:00:00Z",
        "packageStatus": {"status": status},
        "carrier": "Yun Express",
    }
    if ship_time is not None:
        package["shipTime"] = ship_time
    if number is not None:
        package["trackingNumber"] = number
    return package


def _order_with(*packages: dict[str, object]) -> dict[str, object]:
    order = mfn_order(
        "O-1",
        marketplace_id="ATVPDKIKX0DER",
        carrier="Yun Express",
        tracking_number="YT0000000000000000",
        ship_time="2026-12-01T09:00:00Z",
        deliver_by_latest="2026-12-19T07:59:59Z",
        asin="B0TOY00001",
    )
    order["packages"] = list(packages)
    return order


@pytest.mark.parametrize(
    ("packages", "chosen"),
    [
        # The first package has no number yet (still PENDING): the later shipped one is the order's.
        ([_package("P1", "PENDING", None, None), _package("P2", "SHIPPED", "2026-12-02T09:00:00Z", "YT2")], "P2"),
        # A number but not handed over yet: not shipped.
        ([_package("P1", "PENDING", None, "YT1"), _package("P2", "IN_TRANSIT", "2026-12-02T09:00:00Z", "YT2")], "P2"),
        # The label was cancelled and the order re-shipped under a new package.
        (
            [
                _package("P1", "CANCELLED", "2026-12-01T09:00:00Z", "YT1"),
                _package("P2", "SHIPPED", "2026-12-03T09:00:00Z", "YT2"),
            ],
            "P2",
        ),
        # A split order, or a replacement sent after a return: the first parcel stays the order's.
        (
            [
                _package("P2", "DELIVERED", "2026-12-04T09:00:00Z", "YT2"),
                _package("P1", "UNDELIVERABLE", "2026-12-01T09:00:00Z", "YT1"),
            ],
            "P1",
        ),
        # Same ship time: the package reference decides, whatever order Amazon lists them in.
        (
            [
                _package("P2", "SHIPPED", "2026-12-01T09:00:00Z", "YT2"),
                _package("P1", "SHIPPED", "2026-12-01T09:00:00Z", "YT1"),
            ],
            "P1",
        ),
        ([_package("P1", "PENDING", None, None)], None),
    ],
)
def test_the_orders_package_is_the_first_handed_to_a_carrier_with_a_number(
    packages: list[dict[str, object]], chosen: str | None
) -> None:
    package = shipped_package(_order_with(*packages))
    assert (package or {}).get("packageReferenceId") == chosen
    built = confirmation_of(_order_with(*packages), "S1", "Toys", NOW)
    if chosen is None:
        assert built is None
    else:
        assert built is not None and built[0].tracking_number == f"YT{chosen[1:]}"


def test_a_corrected_tracking_number_of_the_orders_package_is_a_new_confirmation() -> None:
    first = confirmation_of(_order_with(_package("P1", "SHIPPED", "2026-12-01T09:00:00Z", "YT1")), "S1", "Toys", NOW)
    corrected = confirmation_of(
        _order_with(_package("P1", "SHIPPED", "2026-12-01T09:00:00Z", "YT9")), "S1", "Toys", NOW
    )
    assert first is not None and corrected is not None
    # Same package, same ship time; another number: the worker publishes it (it differs from
    # what it published), and the scorer takes Amazon's newest read (tests/scorer/storage/
    # test_confirmation_sources.py).
    assert (first[0].tracking_number, corrected[0].tracking_number) == ("YT1", "YT9")
    assert first[0].confirmed_at == corrected[0].confirmed_at


def test_the_ship_from_country_is_amazons_record_of_the_package_else_cn() -> None:
    shipped = _package("P1", "SHIPPED", "2026-12-01T09:00:00Z", "YT1")
    from_gb = confirmation_of(_order_with({**shipped, "shipFromAddress": {"countryCode": "GB"}}), "S1", "T", NOW)
    unsaid = confirmation_of(_order_with(shipped), "S1", "T", NOW)
    odd = confirmation_of(_order_with({**shipped, "shipFromAddress": {"countryCode": "Great Britain"}}), "S1", "T", NOW)
    assert from_gb is not None and unsaid is not None and odd is not None
    assert (from_gb[0].ship_from_country, unsaid[0].ship_from_country, odd[0].ship_from_country) == ("GB", "CN", "CN")
