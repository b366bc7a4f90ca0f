"""Render simulated scans as each carrier's own signed push (``carriers.md``).

The codes come from the simulator's reading of carriers.md, not from the ingest's mapping
table; signing uses the ingest's pure helpers (``services.ingest.signatures``) so the
simulator proves interoperability without a second copy of the crypto.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlencode

from services.ingest.signatures import (
    aftership_signature,
    chinapost_data_digest,
    chinapost_sm4_encrypt,
    seventeen_track_signature,
    yunexpress_signature,
)
from shared.schemas import CanonicalStatus
from tools.simulate.catalog import Source
from tools.simulate.scenario import Parcel, Scan

S = CanonicalStatus
BEIJING = timezone(timedelta(hours=8))
#: Local UTC offsets of the destination cities (for carriers that send local times).
DESTINATION_OFFSETS = {
    "US": -8, "UK": 0, "DE": 1, "JP": 9, "SG": 8, "AE": 4, "SA": 3, "MX": -6, "AU": 11,
}  # fmt: skip

#: canonical status -> the carrier's code (None: the carrier has no such record, not sent).
CHINA_POST_CODES: dict[CanonicalStatus, str | None] = {
    S.INFO_RECEIVED: None,
    S.ACCEPTED: "203",
    S.IN_TRANSIT: "389",
    S.ARRIVED_DESTINATION: "306",
    S.OUT_FOR_DELIVERY: "702",
    S.ATTEMPTED_DELIVERY: "705",
    S.DELIVERED: "704",
}
YUNEXPRESS_CODES: dict[CanonicalStatus, str | None] = {
    S.INFO_RECEIVED: "ORDER_CREATION",
    S.ACCEPTED: "PICKED_UP",
    S.IN_TRANSIT: "MAIN_LINE_DEPART",
    S.ARRIVED_DESTINATION: "MAIN_LINE_ARRIVE",
    S.OUT_FOR_DELIVERY: "IN_TRANSIT_CARRIER",
    S.ATTEMPTED_DELIVERY: "DELIVERY_ATTEMPT",
    S.DELIVERED: "DELIVERED",
}
YANWEN_CODES: dict[CanonicalStatus, str | None] = {
    S.INFO_RECEIVED: None,
    S.ACCEPTED: "PU10",
    S.IN_TRANSIT: "LH20",
    S.ARRIVED_DESTINATION: "LM10",
    S.OUT_FOR_DELIVERY: "LM25",
    S.ATTEMPTED_DELIVERY: "LM50",
    S.DELIVERED: "LM40",
}
SEVENTEEN_TRACK_CODES: dict[CanonicalStatus, str | None] = {
    S.INFO_RECEIVED: "InfoReceived",
    S.ACCEPTED: "InTransit_PickedUp",
    S.IN_TRANSIT: "InTransit_Other",
    S.ARRIVED_DESTINATION: "InTransit_Arrival",
    S.OUT_FOR_DELIVERY: "OutForDelivery_Other",
    S.ATTEMPTED_DELIVERY: "DeliveryFailure_Other",
    S.DELIVERED: "Delivered_Other",
}
AFTERSHIP_TAGS: dict[CanonicalStatus, str | None] = {
    S.INFO_RECEIVED: "InfoReceived",
    S.ACCEPTED: "InTransit",
    S.IN_TRANSIT: "InTransit",
    S.ARRIVED_DESTINATION: "InTransit",
    S.OUT_FOR_DELIVERY: "OutForDelivery",
    S.ATTEMPTED_DELIVERY: "AttemptFail",
    S.DELIVERED: "Delivered",
}
DESCRIPTIONS = {
    S.INFO_RECEIVED: "Shipment information received",
    S.ACCEPTED: "Accepted by carrier",
    S.IN_TRANSIT: "Departed facility",
    S.ARRIVED_DESTINATION: "Arrived in destination country",
    S.OUT_FOR_DELIVERY: "Out for delivery",
    S.ATTEMPTED_DELIVERY: "Delivery attempted, recipient not available",
    S.DELIVERED: "Delivered",
    S.UNKNOWN: "Processing",
}


@dataclass(frozen=True)
class WebhookSecrets:
    chinapost_sm4_key_hex: str
    chinapost_digest_key: str
    yunexpress_secret: str
    yanwen_token: str
    seventeen_track_api_key: str
    aftership_secret: str

    @classmethod
    def from_ingest_settings(cls) -> WebhookSecrets:
        """The secrets the ingest would use with this process's environment (dev defaults locally)."""
        from services.ingest.settings import IngestSettings

        settings = IngestSettings()
        return cls(
            chinapost_sm4_key_hex=settings.chinapost_sm4_key_hex(),
            chinapost_digest_key=settings.chinapost_digest_key.get_secret_value(),
            yunexpress_secret=settings.yunexpress_secret.get_secret_value(),
            yanwen_token=settings.yanwen_token.get_secret_value(),
            seventeen_track_api_key=settings.seventeen_track_api_key.get_secret_value(),
            aftership_secret=settings.aftership_secret.get_secret_value(),
        )


@dataclass(frozen=True)
class ParcelUpdate:
    """One parcel in a push: the history the carrier re-sends, in the order it sends it."""

    parcel: Parcel
    scans: tuple[Scan, ...]


@dataclass(frozen=True)
class Push:
    source: Source
    updates: tuple[ParcelUpdate, ...]
    #: Variant of the envelope (YunExpress ``body`` wrapper, China Post form encoding).
    variant: int = 0


@dataclass(frozen=True)
class HttpRequest:
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    #: How to tell the carrier's own ack says "accepted" (China Post answers 200 with a code).
    accepted: Callable[[int, bytes], bool] = lambda status, _body: 200 <= status < 300


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _local(moment: datetime, hours: int) -> datetime:
    return moment.astimezone(timezone(timedelta(hours=hours)))


def _plain(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _is_destination(scan: Scan) -> bool:
    return scan.status in {S.ARRIVED_DESTINATION, S.OUT_FOR_DELIVERY, S.ATTEMPTED_DELIVERY, S.DELIVERED}


def _code(table: dict[CanonicalStatus, str | None], scan: Scan) -> str | None:
    return scan.raw_code if scan.status is S.UNKNOWN else table.get(scan.status)


def _china_post_traces(push: Push) -> list[dict[str, object]]:
    traces: list[dict[str, object]] = []
    for update in push.updates:
        for scan in update.scans:
            code = _code(CHINA_POST_CODES, scan)
            if code is None:
                continue
            traces.append(
                {
                    "waybillNo": update.parcel.tracking_number,
                    "opTime": _plain(scan.occurred_at.astimezone(BEIJING)),
                    "opCode": code,
                    "opName": DESCRIPTIONS[scan.status],
                    "opDesc": DESCRIPTIONS[scan.status],
                    "opOrgName": scan.location,
                    "opOrgProvName": "",
                    "opOrgCity": scan.location,
                    "operatorNo": "",
                    "operatorName": "",
                }
            )
    return traces


def china_post_ems(push: Push, secrets: WebhookSecrets, now: datetime) -> HttpRequest:
    encrypted = chinapost_sm4_encrypt(_json(_china_post_traces(push)), secrets.chinapost_sm4_key_hex)
    serial = uuid.uuid4().hex
    fields = {
        "logitcsInterface": encrypted,
        "method": "040002",
        "msgType": "JSON",
        "senderNo": "SIM-CHINAPOST",
        "serialNo": serial,
        "timeStamp": _plain(now.astimezone(BEIJING)),
        "version": "V1.0.0",
    }
    if push.variant % 2:
        body, content_type = urlencode(fields).encode(), "application/x-www-form-urlencoded"
    else:
        body, content_type = _json(fields), "application/json"
    return HttpRequest(
        "/v1/webhooks/china-post",
        body,
        {"content-type": content_type},
        accepted=lambda status, reply: status == 200 and json.loads(reply).get("code") == "00000",
    )


def china_post_traces(push: Push, secrets: WebhookSecrets, now: datetime) -> HttpRequest:
    body = _json({"traces": _china_post_traces(push)})
    digest = chinapost_data_digest(body, secrets.chinapost_digest_key)
    if push.variant % 2:
        return HttpRequest("/v1/webhooks/china-post", body, {"content-type": "application/json", "data_digest": digest})
    return HttpRequest(
        "/v1/webhooks/china-post?" + urlencode({"data_digest": digest}), body, {"content-type": "application/json"}
    )


def _yunexpress_parcel(update: ParcelUpdate) -> dict[str, object]:
    parcel = update.parcel
    events = []
    for scan in update.scans:
        code = _code(YUNEXPRESS_CODES, scan)
        if code is None:
            continue
        offset = DESTINATION_OFFSETS[parcel.destination] if _is_destination(scan) else 8
        events.append(
            {
                "track_node_code": code,
                "track_node_description": DESCRIPTIONS[scan.status],
                "process_content": DESCRIPTIONS[scan.status],
                "process_time": _plain(_local(scan.occurred_at, offset)),
                "process_utc_time": _plain(scan.occurred_at.astimezone(UTC)),
                "process_country": parcel.destination if _is_destination(scan) else "CN",
                "process_province": "",
                "process_city": scan.location,
                "process_location": scan.location,
            }
        )
    return {
        "waybill_number": parcel.tracking_number,
        "tracking_number": "LM" + parcel.tracking_number[-10:],
        "customer_order_number": "",
        "package_status": "T",
        "product_code": "THPHR",
        "product_name": parcel.service.service or "",
        "channel_code": "",
        "origin_code": "CN",
        "destination_code": parcel.destination,
        "last_mile_name": "",
        "track_events": events,
    }


def yunexpress(push: Push, secrets: WebhookSecrets, now: datetime) -> HttpRequest:
    timestamp = str(int(now.timestamp() * 1000))
    parcel = _yunexpress_parcel(push.updates[0])
    envelope: dict[str, object] = (
        {"customerCode": "SIM001", "timestamp": timestamp, "body": parcel}
        if push.variant % 2
        else {"data_code": "tisPushData", "data": parcel}
    )
    body = _json(envelope)
    return HttpRequest(
        "/v1/webhooks/yunexpress",
        body,
        {
            "content-type": "application/json",
            "X-Openapi-Request-Timestamp": timestamp,
            "X-Openapi-Signature": yunexpress_signature(timestamp, body, secrets.yunexpress_secret),
        },
    )


def _offset_text(hours: int) -> str:
    return f"{hours:+d}"


def yanwen(push: Push, secrets: WebhookSecrets, now: datetime) -> HttpRequest:
    result = []
    for update in push.updates:
        parcel = update.parcel
        checkpoints = []
        for scan in update.scans:
            code = _code(YANWEN_CODES, scan)
            if code is None:
                continue
            offset = DESTINATION_OFFSETS[parcel.destination] if _is_destination(scan) else 8
            checkpoints.append(
                {
                    "time_stamp": _plain(_local(scan.occurred_at, offset)),
                    "time_zone": _offset_text(offset),
                    "tracking_status": code,
                    "message": DESCRIPTIONS[scan.status],
                    "location": scan.location,
                    "is_last_mile_checkpoint": _is_destination(scan),
                    "extraProperties": {},
                }
            )
        result.append(
            {
                "tracking_number": parcel.tracking_number,
                "waybill_number": "",
                "exchange_number": "",
                "order_number": "",
                "tracking_status": checkpoints[-1]["tracking_status"] if checkpoints else "NOTFOUND",
                "origin_country": "CN",
                "destination_country": parcel.destination,
                "last_mile_carrier": "",
                "checkpoints": checkpoints,
            }
        )
    body = _json({"code": 0, "message": "success", "result": result})
    return HttpRequest(
        "/v1/webhooks/yanwen", body, {"content-type": "application/json", "Authorization": secrets.yanwen_token}
    )


def seventeen_track(push: Push, secrets: WebhookSecrets, now: datetime) -> HttpRequest:
    update = push.updates[0]
    parcel = update.parcel
    events = []
    for scan in sorted(update.scans, key=lambda s: s.occurred_at, reverse=True):  # newest first
        code = _code(SEVENTEEN_TRACK_CODES, scan)
        if code is None:
            continue
        offset = DESTINATION_OFFSETS[parcel.destination] if _is_destination(scan) else 8
        events.append(
            {
                "time_iso": _local(scan.occurred_at, offset).isoformat(),
                "time_utc": scan.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "description": DESCRIPTIONS[scan.status],
                "location": scan.location,
                "stage": code.split("_")[0],
                "sub_status": code,
            }
        )
    body = _json(
        {
            "event": "TRACKING_UPDATED",
            "data": {
                "number": parcel.tracking_number,
                "carrier": int(parcel.service.aggregator_code or 0),
                "tag": "",
                "track_info": {
                    "tracking": {"providers": [{"provider": {"name": parcel.service.carrier_name}, "events": events}]}
                },
            },
        }
    )
    return HttpRequest(
        "/v1/webhooks/17track",
        body,
        {"content-type": "application/json", "sign": seventeen_track_signature(body, secrets.seventeen_track_api_key)},
    )


def aftership(push: Push, secrets: WebhookSecrets, now: datetime) -> HttpRequest:
    update = push.updates[0]
    parcel = update.parcel
    checkpoints = []
    for scan in update.scans:
        tag = _code(AFTERSHIP_TAGS, scan)
        if tag is None:
            continue
        offset = DESTINATION_OFFSETS[parcel.destination] if _is_destination(scan) else 8
        checkpoints.append(
            {
                "checkpoint_time": _local(scan.occurred_at, offset).isoformat(),
                "message": DESCRIPTIONS[scan.status],
                "location": scan.location,
                "tag": tag,
                "subtag": f"{tag}_001",
            }
        )
    last_tag = checkpoints[-1]["tag"] if checkpoints else "Pending"
    body = _json(
        {
            "ts": int(now.timestamp()),
            "event": "tracking_update",
            "event_id": str(uuid.uuid4()),
            "msg": {
                "tracking_number": parcel.tracking_number,
                "slug": parcel.service.aggregator_code,
                "tag": last_tag,
                "subtag": f"{last_tag}_001",
                "checkpoints": checkpoints,
            },
        }
    )
    return HttpRequest(
        "/v1/webhooks/aftership",
        body,
        {
            "content-type": "application/json",
            "aftership-hmac-sha256": aftership_signature(body, secrets.aftership_secret),
        },
    )


RENDERERS: dict[Source, Callable[[Push, WebhookSecrets, datetime], HttpRequest]] = {
    Source.CHINA_POST_EMS: china_post_ems,
    Source.CHINA_POST_TRACES: china_post_traces,
    Source.YUNEXPRESS: yunexpress,
    Source.YANWEN: yanwen,
    Source.SEVENTEEN_TRACK: seventeen_track,
    Source.AFTERSHIP: aftership,
}
#: How many parcels one push of a source may carry.
PARCELS_PER_PUSH = {
    Source.CHINA_POST_EMS: 20,
    Source.CHINA_POST_TRACES: 20,
    Source.YANWEN: 30,
    Source.YUNEXPRESS: 1,
    Source.SEVENTEEN_TRACK: 1,
    Source.AFTERSHIP: 1,
}


def render(push: Push, secrets: WebhookSecrets, now: datetime) -> HttpRequest:
    return RENDERERS[push.source](push, secrets, now)


_CODE_TABLES: dict[Source, dict[CanonicalStatus, str | None]] = {
    Source.CHINA_POST_EMS: CHINA_POST_CODES,
    Source.CHINA_POST_TRACES: CHINA_POST_CODES,
    Source.YUNEXPRESS: YUNEXPRESS_CODES,
    Source.YANWEN: YANWEN_CODES,
    Source.SEVENTEEN_TRACK: SEVENTEEN_TRACK_CODES,
    Source.AFTERSHIP: AFTERSHIP_TAGS,
}


def sendable(source: Source, scan: Scan) -> bool:
    """Whether the source has a record for this scan (China Post and Yanwen push no label records)."""
    return _code(_CODE_TABLES[source], scan) is not None
