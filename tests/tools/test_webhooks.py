"""Rendered pushes are what the ingest's own verifiers and parsers accept, status for status."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from services.ingest import signatures
from services.ingest.carriers import aftership, china_post, seventeen_track, yanwen, yunexpress
from shared.schemas import DELIVERY_SCAN_STATUSES, PHYSICAL_SCAN_STATUSES
from shared.schemas import CanonicalStatus as S
from tests.tools.conftest import ScanFactory
from tools.simulate.catalog import SERVICES, Source
from tools.simulate.scenario import Parcel
from tools.simulate.webhooks import ParcelUpdate, Push, WebhookSecrets, render, sendable

SECRETS = WebhookSecrets("0123456789abcdeffedcba9876543210", "digest-key", "yun", "yanwen-token", "17key", "aftership")
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
SERVICE_OF = {
    Source.CHINA_POST_EMS: "china-post/epacket",
    Source.CHINA_POST_TRACES: "china-post/registered",
    Source.YUNEXPRESS: "yunexpress/line",
    Source.YANWEN: "yanwen/line",
    Source.SEVENTEEN_TRACK: "4px/standard",
    Source.AFTERSHIP: "sunyou/economy",
}
STATUSES = (
    S.INFO_RECEIVED,
    S.ACCEPTED,
    S.IN_TRANSIT,
    S.ARRIVED_DESTINATION,
    S.OUT_FOR_DELIVERY,
    S.ATTEMPTED_DELIVERY,
    S.DELIVERED,
)


def _kind(status: S) -> str:
    if status in DELIVERY_SCAN_STATUSES:
        return status.value
    return "physical" if status in PHYSICAL_SCAN_STATUSES else "electronic"


def _parse(source: Source, path: str, headers: dict[str, str], body: bytes) -> list[tuple[str, S]]:
    received = NOW
    if source is Source.CHINA_POST_EMS:
        envelope = china_post.parse_envelope(body, headers["content-type"])
        assert envelope is not None
        events = china_post.parse_ems_payload(
            signatures.chinapost_sm4_decrypt(envelope.encrypted, SECRETS.chinapost_sm4_key_hex), received
        )
    elif source is Source.CHINA_POST_TRACES:
        digest = headers.get("data_digest") or parse_qs(urlsplit(path).query)["data_digest"][0]
        assert digest == signatures.chinapost_data_digest(body, SECRETS.chinapost_digest_key)
        events = china_post.parse_traces_push(body, received)
    elif source is Source.YUNEXPRESS:
        expected = signatures.yunexpress_signature(
            headers["X-Openapi-Request-Timestamp"], body, SECRETS.yunexpress_secret
        )
        assert headers["X-Openapi-Signature"] == expected
        events = yunexpress.parse(body, received)
    elif source is Source.YANWEN:
        assert headers["Authorization"] == SECRETS.yanwen_token
        events = yanwen.parse(body, received)
    elif source is Source.SEVENTEEN_TRACK:
        assert headers["sign"] == signatures.seventeen_track_signature(body, SECRETS.seventeen_track_api_key)
        events = seventeen_track.parse(body, received)
    else:
        assert headers["aftership-hmac-sha256"] == signatures.aftership_signature(body, SECRETS.aftership_secret)
        events = aftership.parse(body, received)
    return sorted((event.occurred_at.isoformat(), event.status) for event in events)


@pytest.mark.parametrize("variant", [0, 1])
@pytest.mark.parametrize("source", list(Source))
def test_every_source_round_trips_through_the_ingest_parser(
    make_scan: ScanFactory, source: Source, variant: int
) -> None:
    scans = tuple(make_scan(status, hour=hour) for hour, status in enumerate(STATUSES, start=1))
    parcel = Parcel("RR123456785CN", SERVICE_OF[source], "SG", scans, "delivered")
    request = render(Push(source, (ParcelUpdate(parcel, scans),), variant), SECRETS, NOW)
    parsed = _parse(source, request.path, request.headers, request.body)
    expected = sorted((scan.occurred_at.isoformat(), scan.status) for scan in scans if sendable(source, scan))
    # Carriers without a code for a stage report a neighbouring one (China Post has no
    # "arrived in destination" code); what the truth relies on is exact: which events are
    # physical scans and which are delivery scans, at which time.
    assert [(at, _kind(status)) for at, status in parsed] == [(at, _kind(status)) for at, status in expected]
    assert SERVICES[SERVICE_OF[source]].source is source


def test_unknown_codes_reach_the_ingest_as_unknown(make_scan: ScanFactory) -> None:
    unknown = make_scan(S.UNKNOWN).__class__(S.UNKNOWN, make_scan(S.ACCEPTED).occurred_at, "Yiwu", "516")
    parcel = Parcel("RR123456785CN", "china-post/registered", "AE", (unknown,), "no_pickup")
    request = render(Push(Source.CHINA_POST_TRACES, (ParcelUpdate(parcel, (unknown,)),)), SECRETS, NOW)
    assert [status for _, status in _parse(Source.CHINA_POST_TRACES, request.path, request.headers, request.body)] == [
        S.UNKNOWN
    ]
    assert json.loads(request.body)["traces"][0]["opCode"] == "516"
