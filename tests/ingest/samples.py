"""Realistic signed pushes of every source, for the tests (bodies as carriers send them)."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from services.ingest import signatures
from services.ingest.settings import IngestSettings
from shared.schemas import CanonicalStatus

Headers = dict[str, str]


@dataclass(frozen=True)
class SignedPush:
    path: str
    body: bytes
    headers: Headers
    params: dict[str, str] = field(default_factory=dict)
    #: (carrier_code, status) of the events the push must produce, in any order.
    expected: tuple[tuple[str, CanonicalStatus], ...] = ()
    carrier: str = ""


def china_post_traces(number: str) -> list[dict[str, object]]:
    return [
        {"waybillNo": number, "opTime": "2026-11-18 10:15:00", "opCode": "203", "opName": "收寄", "opOrgName": "深圳"},
        {"waybillNo": number, "opTime": "2026-11-18 18:00:00", "opCode": "954", "opOrgName": "广州国际"},
        {"waybillNo": number, "opTime": "2026-11-19 02:00:00", "opCode": "305", "opDesc": "undocumented"},
        {"waybillNo": number, "opTime": "2026-11-25 09:30:00+08:00", "opCode": 704, "opName": "妥投"},
    ]


CHINA_POST_EXPECTED = (
    ("203", CanonicalStatus.ACCEPTED),
    ("954", CanonicalStatus.IN_TRANSIT),
    ("305", CanonicalStatus.UNKNOWN),
    ("704", CanonicalStatus.DELIVERED),
)


def china_post_ems(
    settings: IngestSettings, number: str, *, form: bool = False, key_hex: str | None = None
) -> SignedPush:
    encrypted = signatures.chinapost_sm4_encrypt(
        orjson.dumps(china_post_traces(number)), key_hex or settings.chinapost_sm4_key_hex()
    )
    fields = {
        "logitcsInterface": encrypted,
        "method": "040002",
        "msgType": "JSON",
        "senderNo": "1100012345678",
        "serialNo": "SN-" + number,
        "timeStamp": "2026-11-25 10:00:00",
        "version": "V1.0.0",
    }
    if form:
        body = urllib.parse.urlencode(fields).encode()
        headers = {"content-type": "application/x-www-form-urlencoded"}
    else:
        body, headers = orjson.dumps(fields), {"content-type": "application/json"}
    return SignedPush("/v1/webhooks/china-post", body, headers, expected=CHINA_POST_EXPECTED, carrier="china-post")


def china_post_traces_push(settings: IngestSettings, number: str, *, in_header: bool = False) -> SignedPush:
    body = orjson.dumps({"traces": china_post_traces(number)})
    digest = signatures.chinapost_data_digest(body, settings.chinapost_digest_key.get_secret_value())
    headers = {"content-type": "application/json"}
    params: dict[str, str] = {}
    if in_header:
        headers["data_digest"] = digest
    else:
        params["data_digest"] = digest
    return SignedPush(
        "/v1/webhooks/china-post", body, headers, params, expected=CHINA_POST_EXPECTED, carrier="china-post"
    )


def yunexpress_headers(settings: IngestSettings, body: bytes, timestamp_ms: int | None = None) -> Headers:
    timestamp = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
    return {
        "content-type": "application/json",
        "X-Openapi-Request-Timestamp": timestamp,
        "X-Openapi-Signature": signatures.yunexpress_signature(
            timestamp, body, settings.yunexpress_secret.get_secret_value()
        ),
    }


def yunexpress_parcel(number: str) -> dict[str, object]:
    return {
        "waybill_number": number,
        "tracking_number": "9400111" + number[-8:],
        "customer_order_number": "ORDER-1",
        "track_events": [
            {
                "track_node_code": "ORDER_CREATION",
                "process_time": "2026-11-18 09:00:00",
                "process_utc_time": "2026-11-18T01:00:00Z",
            },
            {
                "track_node_code": "PICKED_UP",
                "process_time": "2026-11-18 15:00:00",
                "process_utc_time": "2026-11-18T07:00:00Z",
                "process_content": "Picked up",
                "process_city": "Shenzhen",
                "process_country": "CN",
            },
            {"track_node_code": "EDD", "process_utc_time": "2026-11-18T07:00:00Z", "process_content": "ETA 12-01"},
            {"track_node_code": "DELIVERY_ATTEMPT", "process_utc_time": "2026-11-24T15:00:00Z"},
        ],
    }


YUNEXPRESS_EXPECTED = (
    ("ORDER_CREATION", CanonicalStatus.INFO_RECEIVED),
    ("PICKED_UP", CanonicalStatus.ACCEPTED),
    ("DELIVERY_ATTEMPT", CanonicalStatus.ATTEMPTED_DELIVERY),
)


def yunexpress(
    settings: IngestSettings, number: str, *, wrapped: bool = False, timestamp_ms: int | None = None
) -> SignedPush:
    parcel = yunexpress_parcel(number)
    stamped = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    document = (
        {"customerCode": "C123", "timestamp": str(stamped), "body": parcel}
        if wrapped
        else {"data_code": "tisPushData", "data": parcel}
    )
    body = orjson.dumps(document)
    return SignedPush(
        "/v1/webhooks/yunexpress",
        body,
        yunexpress_headers(settings, body),
        expected=YUNEXPRESS_EXPECTED,
        carrier="yunexpress",
    )


def yanwen(settings: IngestSettings, number: str) -> SignedPush:
    body = orjson.dumps(
        {
            "code": 0,
            "message": "success",
            "result": [
                {
                    "tracking_number": number,
                    "waybill_number": "YW" + number,
                    "exchange_number": "LX" + number,
                    "tracking_status": "LM40",
                    "checkpoints": [
                        {"time_stamp": "2026-11-18 11:00:00", "time_zone": "+8", "tracking_status": "PU10"},
                        {"time_stamp": "2026-11-20 08:00:00", "time_zone": "+08", "tracking_status": "LH20"},
                        {"time_stamp": "2026-11-24 10:00:00", "time_zone": "-05:00", "tracking_status": "LM40"},
                        {"time_stamp": "2026-11-24 10:00:00", "time_zone": "-05:00", "tracking_status": "NOTFOUND"},
                    ],
                }
            ],
        }
    )
    headers = {"content-type": "application/json", "Authorization": settings.yanwen_token.get_secret_value()}
    return SignedPush(
        "/v1/webhooks/yanwen",
        body,
        headers,
        expected=(
            ("PU10", CanonicalStatus.ACCEPTED),
            ("LH20", CanonicalStatus.IN_TRANSIT),
            ("LM40", CanonicalStatus.DELIVERED),
        ),
        carrier="yanwen",
    )


def seventeen_track(settings: IngestSettings, number: str, carrier_key: int = 3011) -> SignedPush:
    events = [
        {
            "time_iso": "2026-11-24T10:00:00-05:00",
            "time_utc": "2026-11-24T15:00:00Z",
            "description": "Delivered",
            "location": "NEW YORK",
            "stage": "Delivered",
            "sub_status": "Delivered_Other",
        },
        {
            "time_iso": "2026-11-20T08:00:00+08:00",
            "time_utc": "2026-11-20T00:00:00Z",
            "description": "Departed",
            "stage": "Departure",
            "sub_status": "InTransit_Departure",
        },
        {
            "time_iso": "2026-11-18T10:00:00+08:00",
            "time_utc": "2026-11-18T02:00:00Z",
            "description": "Accepted",
            "stage": "PickedUp",
            "sub_status": "InTransit_PickedUp",
        },
    ]
    document = {
        "event": "TRACKING_UPDATED",
        "data": {
            "number": number,
            "carrier": carrier_key,
            "tag": "",
            "track_info": {
                "tracking": {"providers_hash": 1, "providers": [{"provider": {"key": 3011}, "events": events}]}
            },
        },
    }
    body = orjson.dumps(document)
    headers = {
        "content-type": "application/json",
        "sign": signatures.seventeen_track_signature(body, settings.seventeen_track_api_key.get_secret_value()),
    }
    return SignedPush(
        "/v1/webhooks/17track",
        body,
        headers,
        expected=(
            ("Delivered_Other", CanonicalStatus.DELIVERED),
            ("InTransit_Departure", CanonicalStatus.IN_TRANSIT),
            ("InTransit_PickedUp", CanonicalStatus.ACCEPTED),
        ),
        carrier="china-post",
    )


def aftership_document(number: str) -> dict[str, object]:
    """Modelled on AfterShip's published ``tracking_update`` sample (a USPS parcel from Boca
    Raton, FL: the webhook specification page's example body, also kept in open-source
    receivers' tests): local checkpoint times without an offset, subtags, country_iso3."""
    usps = {"country_name": "United States", "country_iso3": "USA", "slug": "usps", "coordinates": []}
    return {
        "event_id": "bca2a741-8613-4694-bfb4-2ceb0016ee4f",
        "event": "tracking_update",
        "is_tracking_first_tag": False,
        "msg": {
            "id": "n33xyn2b61cm3kosdtnvu00e",
            "tracking_number": number,
            "title": number,
            "origin_country_iso3": "USA",
            "destination_country_iso3": "USA",
            "source": "web",
            "tag": "InTransit",
            "subtag": "InTransit_003",
            "subtag_message": "Arrival scan",
            "slug": "usps",
            "shipment_type": "Priority Mail",
            "checkpoints": [
                {
                    **usps,
                    "location": "BOCA RATON, FL, 33487, USA, United States",
                    "state": "FL",
                    "city": "BOCA RATON",
                    "zip": "33487",
                    "message": "Shipping Label Created, USPS Awaiting Item",
                    "tag": "InfoReceived",
                    "subtag": "InfoReceived_001",
                    "subtag_message": "Info Received",
                    "created_at": "2021-05-17T09:05:31+00:00",
                    "checkpoint_time": "2021-05-13T13:04:00",
                    "raw_tag": "GX",
                },
                {
                    **usps,
                    "location": "BOCA RATON, FL, 33487, USA, United States",
                    "state": "FL",
                    "city": "BOCA RATON",
                    "zip": "33487",
                    "message": "Accepted at USPS Origin Facility",
                    "tag": "InTransit",
                    "subtag": "InTransit_002",
                    "subtag_message": "Acceptance scan",
                    "created_at": "2021-05-17T09:05:31+00:00",
                    "checkpoint_time": "2021-05-13T18:10:00",
                    "raw_tag": "OA",
                },
                {
                    **usps,
                    "location": "WEST PALM BEACH FL DISTRIBUTION CENTER",
                    "state": None,
                    "city": "WEST PALM BEACH FL DISTRIBUTION CENTER",
                    "message": "Arrived at USPS Regional Origin Facility",
                    "tag": "InTransit",
                    "subtag": "InTransit_003",
                    "subtag_message": "Arrival scan",
                    "created_at": "2021-05-17T09:05:31+00:00",
                    "checkpoint_time": "2021-05-13T19:25:00",
                    "raw_tag": "10",
                },
                {
                    **usps,
                    "location": "WEST PALM BEACH FL DISTRIBUTION CENTER",
                    "state": None,
                    "city": "WEST PALM BEACH FL DISTRIBUTION CENTER",
                    "message": "Departed USPS Regional Origin Facility",
                    "tag": "InTransit",
                    "subtag": "InTransit_007",
                    "subtag_message": "Departure Scan",
                    "created_at": "2021-05-17T09:05:31+00:00",
                    "checkpoint_time": "2021-05-14T00:25:00",
                    "raw_tag": "10",
                },
            ],
        },
        "ts": 1621242332,
    }


def aftership(settings: IngestSettings, number: str, document: dict[str, object] | None = None) -> SignedPush:
    body = orjson.dumps(document or aftership_document(number))
    headers = {
        "content-type": "application/json",
        "aftership-hmac-sha256": signatures.aftership_signature(body, settings.aftership_secret.get_secret_value()),
    }
    return SignedPush(
        "/v1/webhooks/aftership",
        body,
        headers,
        expected=(
            ("InfoReceived_001", CanonicalStatus.INFO_RECEIVED),
            ("InTransit_002", CanonicalStatus.ACCEPTED),
            ("InTransit_003", CanonicalStatus.IN_TRANSIT),
            ("InTransit_007", CanonicalStatus.IN_TRANSIT),
        ),
        carrier="usps",
    )


#: source -> builder of a signed push for a tracking number.
SAMPLE_PUSHES: dict[str, Callable[[IngestSettings, str], SignedPush]] = {
    "china-post": china_post_ems,
    "china-post-form": lambda settings, number: china_post_ems(settings, number, form=True),
    "china-post-traces": china_post_traces_push,
    "yunexpress": yunexpress,
    "yunexpress-wrapped": lambda settings, number: yunexpress(settings, number, wrapped=True),
    "yanwen": yanwen,
    "17track": seventeen_track,
    "aftership": aftership,
}


def resign(settings: IngestSettings, push: SignedPush, body: bytes) -> SignedPush:
    """The same source's signature over another body (authenticated garbage)."""
    source = push.path.rsplit("/", 1)[-1]
    headers = dict(push.headers)
    params = dict(push.params)
    if source == "china-post":
        if params or "data_digest" in headers:
            params = {
                "data_digest": signatures.chinapost_data_digest(body, settings.chinapost_digest_key.get_secret_value())
            }
            headers.pop("data_digest", None)
        else:
            encrypted = signatures.chinapost_sm4_encrypt(body, settings.chinapost_sm4_key_hex())
            body = orjson.dumps({"logitcsInterface": encrypted, "serialNo": "S1", "senderNo": "X1"})
            headers["content-type"] = "application/json"
    elif source == "yunexpress":
        headers = yunexpress_headers(settings, body)
    elif source == "17track":
        headers["sign"] = signatures.seventeen_track_signature(
            body, settings.seventeen_track_api_key.get_secret_value()
        )
    elif source == "aftership":
        headers["aftership-hmac-sha256"] = signatures.aftership_signature(
            body, settings.aftership_secret.get_secret_value()
        )
    return SignedPush(push.path, body, headers, params, push.expected, push.carrier)


def unique_number(prefix: str = "TN") -> str:
    import uuid

    return f"{prefix}{uuid.uuid4().int % 10**12:012d}"
