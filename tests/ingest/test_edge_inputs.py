"""Issue 14, section 1: inputs that once got a 500 from the ingest. Each case is signed
(or carries the bearer token) so it reaches the decoders and parsers; the answer must be
a 4xx that says what is wrong or, for a signed carrier push, the carrier's "received"
answer with the body parked as a dead letter. Never a 5xx."""

from __future__ import annotations

import base64

import httpx
import orjson
import pytest

from services.ingest import signatures
from services.ingest.settings import IngestSettings
from shared.schemas import DEADLETTER_CODEC
from shared.topics import DEADLETTER
from tests.ingest.conftest import AUTH, read_topic
from tests.ingest.samples import SAMPLE_PUSHES, SignedPush, resign, unique_number, yunexpress_headers

SOURCES = sorted(SAMPLE_PUSHES)


async def post(client: httpx.AsyncClient, push: SignedPush) -> httpx.Response:
    return await client.post(push.path, content=push.body, headers=push.headers, params=push.params)


def deep_json(depth: int, marker: str) -> bytes:
    return b'{"m":"' + marker.encode() + b'","x":' + b"[" * depth + b"]" * depth + b"}"


def bad_utf8_json(marker: str) -> bytes:
    return b'{"m":"' + marker.encode() + b'","result":[{"tracking_number":"\xff\xfe\xc3"}]}'


async def dead_letters_with(settings: IngestSettings, origin: str, raw: bytes) -> list[object]:
    records = await read_topic(
        settings,
        DEADLETTER,
        lambda record: (
            record.key == origin.encode() and raw in base64.b64decode(DEADLETTER_CODEC.decode(record.value).raw_base64)
        ),
        expected=1,
    )
    return [DEADLETTER_CODEC.decode(record.value) for record in records]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("shape", ["deep", "bad-utf8", "nul"])
async def test_signed_undecodable_push_is_received_and_dead_lettered(
    source: str, shape: str, ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    if shape == "bad-utf8" and source in ("china-post", "china-post-form"):
        pytest.skip("an EMS payload that is not UTF-8 is what a wrong SM4 key yields: 401 by design")
    marker = unique_number("EDGE")
    body = {
        "deep": deep_json(5000, marker),
        "bad-utf8": bad_utf8_json(marker),
        "nul": b'{"m":"' + marker.encode() + b'","result":[{"tracking_number":"A\\u0000B"}]}',
    }[shape]
    push = resign(ingest_settings, SAMPLE_PUSHES[source](ingest_settings, marker), body)

    response = await post(ingest, push)

    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["detail"], reply
    origin = push.path.rsplit("/", 1)[-1]
    letters = await dead_letters_with(ingest_settings, origin, push.body)
    assert len(letters) == 1


async def test_yunexpress_timestamp_of_non_ascii_digits_is_refused(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    push = SAMPLE_PUSHES["yunexpress"](ingest_settings, "YT" + unique_number("")[:12] + "0000")
    headers: dict[str, str | bytes] = dict(yunexpress_headers(ingest_settings, push.body))
    # Header bytes are read as latin-1: b"\xb2" arrives as "²", which str.isdigit() accepts.
    for timestamp in (b"\xb2", b"\xb9\xb2\xb3" * 5, "١٢٣٤٥٦٧٨٩٠١٢٣".encode(), b"9" * 400):
        headers["X-Openapi-Request-Timestamp"] = timestamp
        response = await ingest.post(push.path, content=push.body, headers=headers)
        assert response.status_code == 401, (timestamp, response.text)
        assert "timestamp" in response.json()["detail"]


@pytest.mark.parametrize("zone", ["9" * 400, "9" * 5000, "1e999", "-1e999", "15"])
async def test_yanwen_time_zone_out_of_range_is_named(
    zone: str, ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    number = unique_number("YWZ")
    body = (
        b'{"code":0,"result":[{"tracking_number":"'
        + number.encode()
        + b'","checkpoints":[{"time_stamp":"2026-11-18 11:00:00","tracking_status":"PU10","time_zone":'
        + zone.encode()
        + b"}]}]}"
    )
    response = await ingest.post(
        "/v1/webhooks/yanwen", content=body, headers={"Authorization": ingest_settings.yanwen_token.get_secret_value()}
    )
    assert response.status_code == 200, response.text
    assert "time_zone" in response.json()["detail"]


EDGE_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]


def confirmation(number: str, **fields: object) -> dict[str, object]:
    record: dict[str, object] = {
        "order_id": "o-" + number,
        "seller_id": "seller-edge",
        "marketplace": "US",
        "category": "toys",
        "carrier": "YunExpress",
        "tracking_number": number,
        "order_value": {"amount": "10.00", "currency": "USD"},
        "confirmed_at": "2026-11-20T08:00:00Z",
        "promised_delivery_date": "2026-11-30",
    }
    record.update(fields)
    return record


@pytest.mark.parametrize("moment", EDGE_TIMES)
async def test_confirmed_at_at_the_edges_of_the_calendar_is_a_422(moment: str, ingest: httpx.AsyncClient) -> None:
    response = await ingest.post(
        "/v1/shipments", json=confirmation(unique_number("YT"), confirmed_at=moment), headers=AUTH
    )
    assert response.status_code == 422, response.text
    assert response.json()["rejected"][0]["errors"][0]["field"] == "confirmed_at"


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
async def test_promised_date_far_outside_the_calendar_in_use_is_a_422(day: str, ingest: httpx.AsyncClient) -> None:
    response = await ingest.post(
        "/v1/shipments", json=confirmation(unique_number("YT"), promised_delivery_date=day), headers=AUTH
    )
    assert response.status_code == 422, response.text
    assert response.json()["rejected"][0]["errors"][0]["field"] == "promised_delivery_date"


@pytest.mark.parametrize("moment", EDGE_TIMES)
async def test_cancelled_at_at_the_edges_of_the_calendar_is_a_422(moment: str, ingest: httpx.AsyncClient) -> None:
    response = await ingest.post(
        f"/v1/shipments/{unique_number('YT')}/cancel", json={"cancelled_at": moment}, headers=AUTH
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == "cancelled_at"


@pytest.mark.parametrize(
    "body",
    [
        deep_json(5000, "shipments"),
        b'{"order_id":"\xff\xfe"}',
        orjson.dumps(confirmation("YTNUL0000000000001", category="to\x00ys")),
    ],
    ids=["deep", "bad-utf8", "nul"],
)
async def test_shipment_bodies_that_cannot_be_decoded_get_a_4xx(body: bytes, ingest: httpx.AsyncClient) -> None:
    response = await ingest.post("/v1/shipments", content=body, headers={**AUTH, "content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]
    cancel = await ingest.post(
        "/v1/shipments/YT0000000000000001/cancel", content=body, headers={**AUTH, "content-type": "application/json"}
    )
    assert 400 <= cancel.status_code < 500, cancel.text


async def test_a_nul_in_the_path_or_query_is_a_400(ingest: httpx.AsyncClient) -> None:
    response = await ingest.post("/v1/shipments/YT%00X/cancel", headers=AUTH)
    assert response.status_code in (400, 422), response.text
    for query in ("note=a%00b", "a%00=1"):
        in_query = await ingest.post(f"/v1/shipments/YT0000000000000001/cancel?{query}", headers=AUTH)
        assert in_query.status_code == 400, (query, in_query.text)
        assert "query string" in in_query.json()["detail"], in_query.text
        # The webhooks' fast path (no middleware) gets the same guard.
        webhook = await ingest.post(f"/v1/webhooks/china-post?{query}", content=b"{}")
        assert webhook.status_code == 400, (query, webhook.text)
        assert "query string" in webhook.json()["detail"], webhook.text


def test_timestamp_freshness_takes_ascii_digits_only() -> None:
    now = 1_796_000_000_000
    for timestamp in ("²", "¹²³", "١٢٣٤٥٦٧٨٩٠١٢٣", "1796000000000²", "9" * 400, " ", ""):
        assert not signatures.yunexpress_timestamp_fresh(timestamp, now, 300), timestamp
    assert signatures.yunexpress_timestamp_fresh(f" {now} ", now, 300)


@pytest.mark.parametrize("field", ["order_id", "seller_id"])
async def test_ids_longer_than_the_scorer_stores_are_a_422_not_a_silent_skip(
    field: str, ingest: httpx.AsyncClient
) -> None:
    response = await ingest.post(
        "/v1/shipments", json=confirmation(unique_number("YT"), **{field: "x" * 129}), headers=AUTH
    )
    assert response.status_code == 422, response.text
    assert response.json()["rejected"][0]["errors"][0]["field"] == field
    fits = await ingest.post(
        "/v1/shipments", json=confirmation(unique_number("YT"), **{field: "x" * 128}), headers=AUTH
    )
    assert fits.status_code == 202, fits.text
