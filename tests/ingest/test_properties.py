"""Property tests: no JSON document, however odd, makes a parser crash or the service 5xx.

The pure parsers either return events or raise :class:`PushError`; over HTTP a signed
push of arbitrary JSON is answered 2xx or 4xx."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest import signatures
from services.ingest.carriers import aftership, china_post, seventeen_track, yanwen, yunexpress
from services.ingest.carriers.common import PushError
from services.ingest.settings import IngestSettings
from shared.schemas import TrackingEvent
from tests.ingest.conftest import AUTH
from tests.ingest.samples import yunexpress_headers

NOW = datetime(2026, 11, 26, tzinfo=UTC)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["2026-11-18 10:00:00", "2026-11-18T10:00:00Z", "0001-01-01 00:00:00", "+8", "203", "LM40"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def shaped(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects that use a source's field names (so parsing gets past the first level)."""
    return st.fixed_dictionaries({}, optional=fields)


trace = shaped({name: json_values for name in ("waybillNo", "traceNo", "opTime", "opCode", "opName", "opOrgName")})
yun_event = shaped({name: json_values for name in ("track_node_code", "process_time", "process_utc_time")})
yun_parcel = shaped(
    {"waybill_number": json_values, "tracking_number": json_values, "track_events": st.lists(yun_event)}
)
checkpoint = shaped({name: json_values for name in ("time_stamp", "time_zone", "tracking_status", "message")})
yanwen_parcel = shaped({"tracking_number": json_values, "checkpoints": st.lists(checkpoint, max_size=3)})
track_event = shaped({name: json_values for name in ("time_iso", "time_utc", "sub_status", "stage", "location")})
as_checkpoint = shaped({name: json_values for name in ("checkpoint_time", "tag", "message", "location")})

DOCUMENTS: dict[str, st.SearchStrategy[Any]] = {
    "china-post": json_values | st.lists(trace, max_size=3) | shaped({"traces": st.lists(trace, max_size=3)}),
    "yunexpress": json_values
    | shaped({"data_code": st.sampled_from(["tisPushData", "x"]) | json_values, "data": yun_parcel | json_values})
    | shaped({"body": st.lists(yun_parcel, max_size=2)}),
    "yanwen": json_values | shaped({"code": json_values, "result": st.lists(yanwen_parcel, max_size=2) | json_values}),
    "17track": json_values
    | shaped(
        {
            "event": st.sampled_from(["TRACKING_UPDATED", "TRACKING_STOPPED"]) | json_values,
            "data": shaped(
                {
                    "number": json_values,
                    "carrier": json_values,
                    "track_info": shaped(
                        {"tracking": shaped({"providers": st.lists(shaped({"events": st.lists(track_event)}))})}
                    ),
                }
            ),
        }
    ),
    "aftership": json_values
    | shaped(
        {
            "event": st.just("tracking_update") | json_values,
            "msg": shaped(
                {"tracking_number": json_values, "slug": json_values, "checkpoints": st.lists(as_checkpoint)}
            ),
        }
    ),
}

PARSERS: dict[str, list[Callable[[bytes, datetime], list[TrackingEvent]]]] = {
    "china-post": [china_post.parse_traces_push, china_post.parse_ems_payload],
    "yunexpress": [yunexpress.parse],
    "yanwen": [yanwen.parse],
    "17track": [seventeen_track.parse],
    "aftership": [aftership.parse],
}


@pytest.mark.parametrize("source", sorted(PARSERS))
def test_parsers_return_events_or_a_push_error(source: str) -> None:
    @settings(max_examples=300, deadline=None)
    @given(document=DOCUMENTS[source])
    def check(document: Any) -> None:
        body = orjson.dumps(document)
        for parse in PARSERS[source]:
            try:
                events = parse(body, NOW)
            except PushError as error:
                assert str(error)
                continue
            for event in events:
                assert event.tracking_number == event.tracking_number.strip().upper()
                assert event.occurred_at.tzinfo is not None

    check()


def signed(source: str, body: bytes, settings_: IngestSettings) -> tuple[bytes, dict[str, str]]:
    if source == "china-post":
        encrypted = signatures.chinapost_sm4_encrypt(body, settings_.chinapost_sm4_key_hex())
        return orjson.dumps({"logitcsInterface": encrypted, "serialNo": "1"}), {"content-type": "application/json"}
    if source == "yunexpress":
        return body, yunexpress_headers(settings_, body)
    if source == "yanwen":
        return body, {"Authorization": settings_.yanwen_token.get_secret_value()}
    if source == "17track":
        return body, {
            "sign": signatures.seventeen_track_signature(body, settings_.seventeen_track_api_key.get_secret_value())
        }
    return body, {
        "aftership-hmac-sha256": signatures.aftership_signature(body, settings_.aftership_secret.get_secret_value())
    }


@pytest.mark.parametrize("source", sorted(PARSERS))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_signed_arbitrary_json_never_gets_a_5xx(
    source: str, data: st.DataObject, ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    body, headers = signed(source, orjson.dumps(data.draw(DOCUMENTS[source])), ingest_settings)
    response = await ingest.post(f"/v1/webhooks/{source}", content=body, headers=headers)
    assert response.status_code == 200, response.text


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(document=json_values | st.lists(json_values, max_size=3))
async def test_arbitrary_json_shipments_never_get_a_5xx(document: Any, ingest: httpx.AsyncClient) -> None:
    response = await ingest.post("/v1/shipments", content=orjson.dumps(document), headers=AUTH)
    assert response.status_code in (202, 400, 422), response.text
