"""Each source end to end against the real broker: signed push -> carrier-shaped ack ->
canonical events on the topic; repeats, forgeries, garbage and oversize bodies."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY

from services.ingest import signatures
from services.ingest.settings import IngestSettings
from shared.schemas import DEADLETTER_CODEC, TRACKING_EVENT_CODEC, TrackingEvent
from shared.topics import DEADLETTER, TRACKING_EVENTS
from tests.ingest.conftest import keyed, read_topic
from tests.ingest.samples import SAMPLE_PUSHES, SignedPush, china_post_ems, resign, unique_number

SOURCES = sorted(SAMPLE_PUSHES)
OTHER_SM4_KEY = "ffeeddccbbaa99887766554433221100"


def number_for(source: str) -> str:
    # YunExpress waybills that pass the sanity format; other sources any unique number.
    return "YT" + unique_number("")[:12] + "0000" if source.startswith("yunexpress") else unique_number()


async def post(client: httpx.AsyncClient, push: SignedPush) -> httpx.Response:
    return await client.post(push.path, content=push.body, headers=push.headers, params=push.params)


async def events_of(settings: IngestSettings, number: str, expected: int, settle: float = 0.0) -> list[TrackingEvent]:
    records = await read_topic(settings, TRACKING_EVENTS, keyed(number), expected, settle_seconds=settle)
    return [TRACKING_EVENT_CODEC.decode(record.value) for record in records]


def expected_ack(source: str, push: SignedPush, number: str) -> dict[str, object]:
    count = len(push.expected)
    acks: dict[str, dict[str, object]] = {
        "china-post": {"serialNo": f"SN-{number}", "code": "00000", "codeMessage": "", "senderNo": "1100012345678"},
        "china-post-form": {
            "serialNo": f"SN-{number}",
            "code": "00000",
            "codeMessage": "",
            "senderNo": "1100012345678",
        },
        "china-post-traces": {"serialNo": "", "code": "00000", "codeMessage": "", "senderNo": ""},
        "yunexpress": {"success": True, "code": 0, "message": "success", "accepted": count},
        "yunexpress-wrapped": {"success": True, "code": 0, "message": "success", "accepted": count},
        "yanwen": {"code": 0, "message": "success", "accepted": count},
        "17track": {"accepted": count},
        "aftership": {"accepted": count},
    }
    return acks[source]


@pytest.mark.parametrize("source", SOURCES)
async def test_signed_push_reaches_the_topic_and_a_repeat_gives_the_same_ids(
    source: str, ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    number = number_for(source)
    push = SAMPLE_PUSHES[source](ingest_settings, number)

    response = await post(ingest, push)

    assert response.status_code == 200, response.text
    assert response.json() == expected_ack(source, push, number)
    first = await events_of(ingest_settings, number, len(push.expected))
    assert Counter((event.carrier_code, event.status) for event in first) == Counter(push.expected)
    assert {event.carrier for event in first} == {push.carrier}
    assert {event.source for event in first} == {push.path.rsplit("/", 1)[-1]}
    assert all(event.occurred_at.utcoffset() is not None for event in first)

    again = await post(ingest, push)

    # The repeat is acknowledged the same way; its events were produced moments ago, so
    # this process does not produce them again (each id stays on the topic once).
    assert again.status_code == 200
    assert again.json() == expected_ack(source, push, number)
    after = await events_of(ingest_settings, number, len(push.expected), settle=0.5)
    assert sorted(event.event_id for event in after) == sorted(event.event_id for event in first)


@pytest.mark.parametrize("source", ["china-post", "yunexpress", "yanwen", "17track", "aftership"])
async def test_without_the_recent_ids_a_repeat_produces_the_same_ids_again(
    source: str,
    ingest_factory: Callable[[IngestSettings], AbstractAsyncContextManager[httpx.AsyncClient]],
    make_settings: Callable[..., IngestSettings],
) -> None:
    settings = make_settings(recent_event_ids=0)
    number = number_for(source)
    push = SAMPLE_PUSHES[source](settings, number)
    async with ingest_factory(settings) as client:
        assert (await post(client, push)).status_code == 200
        first = await events_of(settings, number, len(push.expected))
        assert (await post(client, push)).status_code == 200
    both = await events_of(settings, number, 2 * len(push.expected))
    ids = Counter(event.event_id for event in both)
    assert set(ids) == {event.event_id for event in first}
    assert set(ids.values()) == {2}


async def test_times_are_converted_to_utc_with_the_carrier_zone(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    number = unique_number()
    assert (await post(ingest, china_post_ems(ingest_settings, number))).status_code == 200
    events = {event.carrier_code: event for event in await events_of(ingest_settings, number, 4)}
    # "2026-11-18 10:15:00" has no offset: Beijing time.
    assert events["203"].occurred_at.isoformat() == "2026-11-18T02:15:00+00:00"
    assert events["704"].occurred_at.isoformat() == "2026-11-25T01:30:00+00:00"
    assert events["203"].location == "深圳"


async def test_yunexpress_keeps_the_last_mile_number_as_an_alternate(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    number = number_for("yunexpress")
    push = SAMPLE_PUSHES["yunexpress"](ingest_settings, number)
    assert (await post(ingest, push)).status_code == 200
    events = await events_of(ingest_settings, number, 3)
    assert {event.tracking_number for event in events} == {number}
    assert {event.alternate_tracking_numbers for event in events} == {("9400111" + number[-8:],)}
    assert "EDD" not in {event.carrier_code for event in events}


def _deadletters(origin: str) -> float:
    return REGISTRY.get_sample_value("vtr_ingest_deadletters_total", {"origin": origin}) or 0.0


def forged(source: str, settings: IngestSettings, push: SignedPush, number: str) -> SignedPush:
    """The push with a signature, token or key that is not the configured one."""
    headers = dict(push.headers)
    if source in ("china-post", "china-post-form"):
        form = source == "china-post-form"
        return SignedPush(**{**china_post_ems(settings, number, form=form, key_hex=OTHER_SM4_KEY).__dict__})
    if source == "yanwen":
        headers["Authorization"] = "not-the-token"
        return SignedPush(push.path, push.body, headers, push.params)
    # The signature was computed over the original body; any change breaks it.
    return SignedPush(push.path, push.body.replace(b"{", b"{ ", 1), headers, push.params)


@pytest.mark.parametrize("source", SOURCES)
async def test_wrong_signature_is_refused_and_nothing_is_produced(
    source: str, ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    number = number_for(source)
    push = SAMPLE_PUSHES[source](ingest_settings, number)

    refused = await post(ingest, forged(source, ingest_settings, push, number))

    assert refused.status_code == 401
    # A genuine push for the same number lands in the same partition after anything the
    # forged one could have produced; only the genuine events may be there.
    assert (await post(ingest, push)).status_code == 200
    events = await events_of(ingest_settings, number, len(push.expected), settle=0.5)
    assert len(events) == len(push.expected)


async def test_missing_signatures_are_refused(ingest: httpx.AsyncClient) -> None:
    for path in ("china-post", "yunexpress", "yanwen", "17track", "aftership"):
        for body in (b'{"traces": []}', b""):
            response = await ingest.post(f"/v1/webhooks/{path}", content=body)
            assert response.status_code == 401, path
            assert response.json()["detail"]


async def test_yunexpress_refuses_a_stale_timestamp(ingest: httpx.AsyncClient, ingest_settings: IngestSettings) -> None:
    push = SAMPLE_PUSHES["yunexpress"](ingest_settings, number_for("yunexpress"))
    stale = str(int(push.headers["X-Openapi-Request-Timestamp"]) - 301_000)
    headers = {
        **push.headers,
        "X-Openapi-Request-Timestamp": stale,
        "X-Openapi-Signature": signatures.yunexpress_signature(
            stale, push.body, ingest_settings.yunexpress_secret.get_secret_value()
        ),
    }
    response = await ingest.post(push.path, content=push.body, headers=headers)
    assert response.status_code == 401
    assert "window" in response.json()["detail"]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("garbage", ["not json {", '{"unexpected": "%s"}'])
async def test_authenticated_garbage_is_answered_as_received_and_kept_as_a_dead_letter(
    source: str, garbage: str, ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    marker = unique_number("GARBAGE")
    body = garbage.replace("%s", marker).encode() if "%s" in garbage else garbage.encode() + marker.encode()
    push = resign(ingest_settings, SAMPLE_PUSHES[source](ingest_settings, marker), body)
    before = _deadletters(push.path.rsplit("/", 1)[-1])

    response = await post(ingest, push)

    # A sender that gets an error retries a few times and then drops the push (17TRACK:
    # three retries in 100 minutes): a correctly signed push is answered as received.
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["dead_lettered"] is True
    detail = reply["detail"]
    assert ("JSON" in detail) if garbage.startswith("not") else ("required field" in detail or "$" in detail)
    if source.startswith("china-post"):
        assert reply["code"] == "00000"
    if source.startswith("yunexpress"):
        assert (reply["success"], reply["code"]) == (True, 0)
    assert _deadletters(push.path.rsplit("/", 1)[-1]) == before + 1
    origin = push.path.rsplit("/", 1)[-1]
    letters = await read_topic(
        ingest_settings,
        DEADLETTER,
        lambda record: record.key == origin.encode() and push.body in DEADLETTER_CODEC.decode(record.value).raw,
        expected=1,
    )
    assert len(letters) == 1
    letter = DEADLETTER_CODEC.decode(letters[0].value)
    assert letter.origin == origin
    assert letter.reason == detail
    assert base64.b64decode(letter.raw_base64) == push.body
    assert not {"x-openapi-signature", "sign", "aftership-hmac-sha256", "authorization"} & set(letter.headers)


async def test_an_invalid_field_is_named(ingest: httpx.AsyncClient, ingest_settings: IngestSettings) -> None:
    body = orjson.dumps(
        {
            "code": 0,
            "result": [{"tracking_number": "X1", "checkpoints": [{"time_stamp": "soon", "tracking_status": "PU10"}]}],
        }
    )
    response = await ingest.post(
        "/v1/webhooks/yanwen", content=body, headers={"Authorization": ingest_settings.yanwen_token.get_secret_value()}
    )
    assert response.status_code == 200
    assert response.json()["detail"].startswith("$.result[0].checkpoints[0].time_stamp:")


async def test_a_body_over_the_limit_gets_413_before_it_is_read(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    too_big = b"x" * (ingest_settings.max_body_bytes + 1)
    declared = await ingest.post("/v1/webhooks/17track", content=too_big)
    assert declared.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(ingest_settings.max_body_bytes // 65536 + 2):
            yield b"y" * 65536

    streamed = await ingest.post("/v1/webhooks/aftership", content=chunks())
    assert streamed.status_code == 413


async def test_openapi_documents_every_webhook_body(ingest: httpx.AsyncClient) -> None:
    schema = (await ingest.get("/openapi.json")).json()
    for source in ("china-post", "yunexpress", "yanwen", "17track", "aftership"):
        body = schema["paths"][f"/v1/webhooks/{source}"]["post"]["requestBody"]
        assert body["content"]["application/json"]["schema"], source
    assert "ShipmentIn" in schema["components"]["schemas"]
    assert (await ingest.get("/docs")).status_code == 200


async def test_metrics_follow_the_catalogue(ingest: httpx.AsyncClient, ingest_settings: IngestSettings) -> None:
    await post(ingest, SAMPLE_PUSHES["aftership"](ingest_settings, unique_number()))
    text = (await ingest.get("/metrics")).text
    for name in (
        'vtr_ingest_webhooks_total{carrier="aftership",outcome="accepted"}',
        'vtr_ingest_last_webhook_timestamp_seconds{carrier="aftership"}',
        'vtr_ingest_events_produced_total{carrier="usps",status="ACCEPTED"}',
        "vtr_ingest_produce_latency_seconds_bucket",
        'vtr_http_requests_total{method="POST",route="/v1/webhooks/aftership",status="200"}',
    ):
        assert name in text, name


async def test_readiness_checks_the_broker(ingest: httpx.AsyncClient) -> None:
    response = await ingest.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"kafka": "ok", "producer": "ok", "credentials": "ok"}


async def test_events_land_where_the_default_partitioner_puts_their_key(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    # The scorer relies on both input topics being partitioned by key the way every other
    # Kafka producer does it (murmur2), so a package's shipment and scans meet.
    from aiokafka.partitioner import DefaultPartitioner

    from shared.kafka import ensure_topics
    from shared.topics import TopicSpec

    numbers = [unique_number() for _ in range(6)]
    for number in numbers:
        assert (await post(ingest, SAMPLE_PUSHES["17track"](ingest_settings, number))).status_code == 200
    records = await read_topic(ingest_settings, TRACKING_EVENTS, keyed(*numbers), 3 * len(numbers))
    counts = await ensure_topics(ingest_settings, [TopicSpec(TRACKING_EVENTS)])  # only reads: it exists
    partitions = list(range(counts[TRACKING_EVENTS]))
    for record in records:
        assert record.partition == DefaultPartitioner()(record.key, partitions, partitions)
    assert len({record.partition for record in records}) > 1


async def test_webhooks_also_work_through_the_router(ingest_settings: IngestSettings) -> None:
    # The raw-ASGI fast path is an optimisation; the documented FastAPI routes behave the same.
    from services.ingest.app import create_app

    app = create_app(ingest_settings)
    app.webhook_fast_path = None
    number = unique_number()
    push = SAMPLE_PUSHES["aftership"](ingest_settings, number)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest.test") as client:
            response = await post(client, push)
            forged = await client.post(push.path, content=push.body + b" ", headers=push.headers)
    assert response.status_code == 200
    assert response.json() == {"accepted": 4}
    assert forged.status_code == 401
    assert len(await events_of(ingest_settings, number, 4)) == 4


def _unmapped(carrier: str) -> float:
    return REGISTRY.get_sample_value("vtr_ingest_unmapped_codes_total", {"carrier": carrier}) or 0.0


async def test_only_events_with_an_unmapped_code_count_as_unmapped(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    number = unique_number()
    body = orjson.dumps(
        {
            "code": 0,
            "result": [
                {
                    "tracking_number": number,
                    "checkpoints": [
                        {"time_stamp": "2026-11-18 11:00:00", "time_zone": "+8", "tracking_status": "PU10"},
                        {"time_stamp": "2026-11-20 08:00:00", "time_zone": "+08", "tracking_status": "LH20"},
                        {"time_stamp": "2026-11-21 08:00:00", "time_zone": "+08", "tracking_status": "ZZ97"},
                    ],
                }
            ],
        }
    )
    before = _unmapped("yanwen")
    response = await ingest.post(
        "/v1/webhooks/yanwen", content=body, headers={"Authorization": ingest_settings.yanwen_token.get_secret_value()}
    )
    assert response.status_code == 200
    assert response.json()["accepted"] == 3
    assert _unmapped("yanwen") - before == 1
