"""Pushes as the vendors document them (issue 11): zones of local times, sub-status tables,
hand-entered checkpoints, event identity, 17TRACK providers/stages/stops, last-mile identity
and YunExpress's older camelCase shape. Bodies are modelled on public samples named in
each test; the parsers are pure, so these run without a broker."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from services.ingest.carriers import aftership, seventeen_track, yanwen, yunexpress
from services.ingest.carriers.common import unique
from services.ingest.mapping import MAPPINGS
from shared.schemas import CanonicalStatus, tracking_event_id
from tests.ingest.samples import aftership_document

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _aftership(checkpoints: list[dict[str, Any]], **msg: Any) -> bytes:
    return orjson.dumps(
        {
            "event": "tracking_update",
            "msg": {"tracking_number": "LK123456785CN", "slug": "china-post", **msg, "checkpoints": checkpoints},
        }
    )


# --- 1. AfterShip local times are local to the checkpoint ---------------------------------


def test_aftership_sample_times_are_read_in_the_checkpoints_zone() -> None:
    # AfterShip's published USPS sample: Boca Raton and West Palm Beach, FL, in May (EDT).
    events = aftership.parse(orjson.dumps(aftership_document("9405516902697649303570")), NOW)
    times = {event.carrier_code + "@" + event.location[:10]: event.occurred_at.isoformat() for event in events}
    assert times == {
        "InfoReceived_001@BOCA RATON": "2021-05-13T17:04:00+00:00",
        "InTransit_002@BOCA RATON": "2021-05-13T22:10:00+00:00",
        # state is null: the state code inside the location ("... FL DISTRIBUTION CENTER").
        "InTransit_003@WEST PALM ": "2021-05-13T23:25:00+00:00",
        "InTransit_007@WEST PALM ": "2021-05-14T04:25:00+00:00",
    }


@pytest.mark.parametrize(
    ("checkpoint", "expected_utc"),
    [
        # China-origin scan, read as UTC before: 8 h late.
        ({"country_iso3": "CHN", "city": "Shenzhen"}, "2026-11-18T02:00:00+00:00"),
        # Newer API versions name the country `country_region`.
        ({"country_region": "GBR"}, "2026-11-18T10:00:00+00:00"),
        # Winter: EST, UTC-5.
        ({"country_iso3": "USA", "state": "NY"}, "2026-11-18T15:00:00+00:00"),
        ({"country_iso3": "USA", "state": "CA"}, "2026-11-18T18:00:00+00:00"),
        # A US state nowhere: the table's default zone (Central).
        ({"country_iso3": "USA", "city": "SOMEWHERE"}, "2026-11-18T16:00:00+00:00"),
        # No country, or one not in zones.toml: the source's fixed zone (UTC), as documented.
        ({}, "2026-11-18T10:00:00+00:00"),
        ({"country_iso3": "ATA"}, "2026-11-18T10:00:00+00:00"),
    ],
)
def test_aftership_times_without_offset_use_the_location(checkpoint: dict[str, Any], expected_utc: str) -> None:
    [event] = aftership.parse(
        _aftership([{"checkpoint_time": "2026-11-18T10:00:00", "tag": "InTransit", **checkpoint}]), NOW
    )
    assert event.occurred_at.isoformat() == expected_utc


def test_aftership_offset_in_the_time_wins_over_the_location() -> None:
    [event] = aftership.parse(
        _aftership([{"checkpoint_time": "2026-11-18T10:00:00-08:00", "tag": "InTransit", "country_iso3": "CHN"}]),
        NOW,
    )
    assert event.occurred_at.isoformat() == "2026-11-18T18:00:00+00:00"


# --- 2. AfterShip's documented subtag table -----------------------------------------------


@pytest.mark.parametrize(
    ("tag", "subtag", "status"),
    [
        # Per AfterShip's "Delivery Sub-statuses" table (docs/tracking/enum/delivery-sub-statuses).
        ("InfoReceived", "InfoReceived_001", CanonicalStatus.INFO_RECEIVED),
        ("InTransit", "InTransit_001", CanonicalStatus.IN_TRANSIT),  # "Shipment on the way"
        ("InTransit", "InTransit_002", CanonicalStatus.ACCEPTED),  # "Shipment accepted by the carrier"
        ("InTransit", "InTransit_003", CanonicalStatus.IN_TRANSIT),  # arrival scan
        ("InTransit", "InTransit_004", CanonicalStatus.ARRIVED_DESTINATION),  # arrived in destination country
        ("InTransit", "InTransit_007", CanonicalStatus.IN_TRANSIT),  # departure scan
        ("OutForDelivery", "OutForDelivery_001", CanonicalStatus.OUT_FOR_DELIVERY),
        ("AvailableForPickup", "AvailableForPickup_001", CanonicalStatus.OUT_FOR_DELIVERY),
        ("AttemptFail", "AttemptFail_002", CanonicalStatus.ATTEMPTED_DELIVERY),
        ("Delivered", "Delivered_001", CanonicalStatus.DELIVERED),
        ("Delivered", "Delivered_002", CanonicalStatus.DELIVERED),  # picked up by the customer
        ("Delivered", "Delivered_003", CanonicalStatus.DELIVERED),  # signed by the customer
        ("Delivered", "Delivered_005", CanonicalStatus.DELIVERED),  # delivered to a neighbour
        ("Exception", "Exception_004", CanonicalStatus.EXCEPTION),  # customs delay
        ("Exception", "Exception_010", CanonicalStatus.RETURNED),  # returning to sender
        ("Exception", "Exception_011", CanonicalStatus.RETURNED),  # returned to sender
        ("Exception", "Exception_013", CanonicalStatus.EXCEPTION),  # lost
        ("Expired", "Expired_001", CanonicalStatus.EXCEPTION),
        # Older payloads without a subtag: the tag decides.
        ("Delivered", None, CanonicalStatus.DELIVERED),
        ("InTransit", None, CanonicalStatus.IN_TRANSIT),
    ],
)
def test_aftership_subtags(tag: str, subtag: str | None, status: CanonicalStatus) -> None:
    [event] = aftership.parse(
        _aftership([{"checkpoint_time": "2026-11-18T10:00:00+08:00", "tag": tag, "subtag": subtag}]), NOW
    )
    assert event.status is status
    assert event.carrier_code == (subtag or tag)


def test_the_first_intransit_is_no_longer_taken_for_the_acceptance() -> None:
    events = aftership.parse(
        _aftership(
            [
                {"checkpoint_time": "2026-11-18T10:00:00+08:00", "tag": "InTransit", "subtag": "InTransit_007"},
                {"checkpoint_time": "2026-11-17T10:00:00+08:00", "tag": "InTransit", "subtag": "InTransit_002"},
            ]
        ),
        NOW,
    )
    assert [event.status for event in events] == [CanonicalStatus.IN_TRANSIT, CanonicalStatus.ACCEPTED]


# --- 3. Checkpoints entered by hand are no scan --------------------------------------------


def test_a_checkpoint_the_merchant_entered_is_never_a_delivery() -> None:
    delivered = {"checkpoint_time": "2026-11-25T10:00:00+08:00", "tag": "Delivered", "subtag": "Delivered_001"}
    scans = [{"checkpoint_time": "2026-11-18T10:00:00+08:00", "tag": "InTransit", "subtag": "InTransit_002"}]
    by_hand = aftership.parse(_aftership([*scans, {**delivered, "source": "user"}]), NOW)
    assert [event.status for event in by_hand] == [CanonicalStatus.ACCEPTED]
    by_carrier = aftership.parse(_aftership([*scans, {**delivered, "source": "carrier"}]), NOW)
    assert [event.status for event in by_carrier] == [CanonicalStatus.ACCEPTED, CanonicalStatus.DELIVERED]
    assert MAPPINGS["aftership"].manual_sources == {"user"}


# --- 4. Event identity: code and message ----------------------------------------------------


def test_two_scans_in_the_same_minute_and_place_are_two_events() -> None:
    # A FedEx history (via AfterShip) with two different scans at one hub in one minute.
    same = {"checkpoint_time": "2026-11-20T14:02:00-06:00", "location": "MEMPHIS, TN", "tag": "InTransit"}
    checkpoints = [
        {**same, "subtag": "InTransit_003", "message": "Arrived at FedEx hub"},
        {**same, "subtag": "InTransit_003", "message": "International shipment release - Import"},
        {**same, "subtag": "InTransit_007", "message": "Arrived at FedEx hub"},
        {**same, "subtag": "InTransit_003", "message": "Arrived at FedEx hub"},  # a true repeat
    ]
    events = unique(aftership.parse(_aftership(checkpoints, slug="fedex"), NOW))
    assert len(events) == 3
    # Scans without a message keep the ids they always had: sha256 of
    # "carrier|number|code|time|location", first 32 hex digits (the literal is that formula).
    always = "1822a53b2eefdfebbcd22ace1897418b"
    assert tracking_event_id("yanwen", "UG1", "PU10", NOW, "Shenzhen", "") == always
    assert tracking_event_id("yanwen", "UG1", "PU10", NOW, "Shenzhen") == always
    assert tracking_event_id("yanwen", "UG1", "PU10", NOW, "Shenzhen", "Picked up") != always


# --- 5. 17TRACK providers, stages, stopped tracking ------------------------------------------


def _seventeen_track_push(number: str) -> dict[str, Any]:
    """Modelled on the TRACKING_UPDATED example of 17TRACK's API v2.2 documentation
    (webhook section): a China Post parcel handed to USPS, providers newest first, each
    with its numeric `provider.key`, `misc_info` naming the last mile."""
    return {
        "event": "TRACKING_UPDATED",
        "data": {
            "number": number,
            "carrier": 3011,
            "param": None,
            "tag": "113-1234567-1234567",
            "track_info": {
                "shipping_info": {"shipper_address": {"country": "CN"}, "recipient_address": {"country": "US"}},
                "latest_status": {"status": "Delivered", "sub_status": "Delivered_Other", "sub_status_descr": None},
                "misc_info": {
                    "risk_factor": 0,
                    "service_type": "ePacket",
                    "local_number": "9400111899223197428490",
                    "local_provider": "USPS",
                    "local_key": 21051,
                },
                "tracking": {
                    "providers_hash": 1163449451,
                    "providers": [
                        {
                            "provider": {"key": 21051, "name": "USPS", "alias": "USPS", "country": "US"},
                            "latest_sync_status": "Success",
                            "events": [
                                {
                                    "time_iso": "2026-11-24T14:03:00-05:00",
                                    "time_utc": "2026-11-24T19:03:00Z",
                                    "time_raw": {"date": "2026-11-24", "time": "14:03", "timezone": "-05:00"},
                                    "description": "Delivered, In/At Mailbox",
                                    "location": "NEW YORK, NY 10001",
                                    "stage": "Delivered",
                                    "sub_status": "Delivered_Other",
                                },
                                {
                                    "time_iso": "2026-11-24T07:10:00-05:00",
                                    "time_utc": "2026-11-24T12:10:00Z",
                                    "description": "Out for Delivery",
                                    "location": "NEW YORK, NY 10001",
                                    "stage": "OutForDelivery",
                                    "sub_status": "OutForDelivery_Other",
                                },
                            ],
                        },
                        {
                            "provider": {"key": 3011, "name": "China Post", "country": "CN"},
                            "events": [
                                {
                                    "time_iso": "2026-11-20T08:00:00+08:00",
                                    "time_utc": "2026-11-20T00:00:00Z",
                                    "description": "Departure from outward office of exchange",
                                    "location": "GUANGZHOU",
                                    "stage": "Departure",
                                    "sub_status": "InTransit_Departure",
                                },
                                {
                                    "time_iso": "2026-11-18T10:00:00+08:00",
                                    "time_utc": "2026-11-18T02:00:00Z",
                                    "description": "Posting/Collection",
                                    "location": "SHENZHEN",
                                    "stage": "PickedUp",
                                    "sub_status": "InTransit_PickedUp",
                                },
                            ],
                        },
                    ],
                },
            },
        },
    }


def test_17track_events_carry_their_providers_carrier_and_the_last_mile() -> None:
    events = seventeen_track.parse(orjson.dumps(_seventeen_track_push("LK123456785CN")), NOW)
    assert [(event.carrier, event.carrier_code, event.status) for event in events] == [
        ("usps", "Delivered_Other", CanonicalStatus.DELIVERED),
        ("usps", "OutForDelivery_Other", CanonicalStatus.OUT_FOR_DELIVERY),
        ("china-post", "InTransit_Departure", CanonicalStatus.IN_TRANSIT),
        ("china-post", "InTransit_PickedUp", CanonicalStatus.ACCEPTED),
    ]
    assert {(event.last_mile_carrier, event.last_mile_tracking_number) for event in events} == {
        ("usps", "9400111899223197428490")
    }
    assert {event.tracking_number for event in events} == {"LK123456785CN"}


def test_17track_unknown_provider_key_is_kept_as_the_number() -> None:
    push = _seventeen_track_push("LK123456785CN")
    push["data"]["track_info"]["tracking"]["providers"][0]["provider"] = {"key": 190999, "name": "New Co"}
    push["data"]["track_info"]["misc_info"] = {"local_number": "NC1", "local_provider": "New Co", "local_key": 190999}
    events = seventeen_track.parse(orjson.dumps(push), NOW)
    assert events[0].carrier == "190999"
    assert (events[0].last_mile_carrier, events[0].last_mile_tracking_number) == ("190999", "NC1")


@pytest.mark.parametrize(
    ("stage", "status"),
    [
        ("InfoReceived", CanonicalStatus.INFO_RECEIVED),
        ("PickedUp", CanonicalStatus.ACCEPTED),
        ("Departure", CanonicalStatus.IN_TRANSIT),
        ("Arrival", CanonicalStatus.ARRIVED_DESTINATION),
        ("AvailableForPickup", CanonicalStatus.OUT_FOR_DELIVERY),
        ("OutForDelivery", CanonicalStatus.OUT_FOR_DELIVERY),
        ("Delivered", CanonicalStatus.DELIVERED),
        ("Returning", CanonicalStatus.RETURNED),
        ("Returned", CanonicalStatus.RETURNED),
    ],
)
def test_17track_events_without_sub_status_fall_back_to_the_stage(stage: str, status: CanonicalStatus) -> None:
    push = _seventeen_track_push("LK123456785CN")
    event = copy.deepcopy(push["data"]["track_info"]["tracking"]["providers"][1]["events"][1])
    del event["sub_status"]
    event["stage"] = stage
    push["data"]["track_info"]["tracking"]["providers"] = [{"provider": {"key": 3011}, "events": [event]}]
    [parsed] = seventeen_track.parse(orjson.dumps(push), NOW)
    assert (parsed.carrier_code, parsed.status) == (stage, status)


def test_17track_tracking_stopped_becomes_a_notice() -> None:
    # The TRACKING_STOPPED push carries the number and carrier, no track_info.
    body = orjson.dumps(
        {"event": "TRACKING_STOPPED", "data": {"number": "lk123456785cn", "carrier": 3011, "param": None, "tag": ""}}
    )
    [notice] = seventeen_track.parse(body, NOW)
    assert (notice.tracking_number, notice.carrier, notice.notice, notice.status) == (
        "LK123456785CN",
        "china-post",
        "tracking_stopped",
        CanonicalStatus.UNKNOWN,
    )
    assert notice.occurred_at == NOW


# --- 6. Last-mile identity from every source that names it -------------------------------


def test_aftership_next_couriers_name_the_last_mile() -> None:
    checkpoints = [{"checkpoint_time": "2026-11-18T10:00:00+08:00", "tag": "InTransit"}]
    body = _aftership(
        checkpoints, next_couriers=[{"slug": "usps", "tracking_number": "9400 1118", "source": "carrier"}]
    )
    [event] = aftership.parse(body, NOW)
    assert (event.last_mile_carrier, event.last_mile_tracking_number) == ("usps", "9400 1118")
    [plain] = aftership.parse(_aftership(checkpoints), NOW)
    assert (plain.last_mile_carrier, plain.last_mile_tracking_number) == ("", "")


def test_yunexpress_and_yanwen_name_the_last_mile() -> None:
    parcel = {
        "waybill_number": "YT2412345678901234",
        "tracking_number": "92612999897543581234",
        "last_mile_name": "USPS",
        "track_events": [{"track_node_code": "PICKED_UP", "process_utc_time": "2026-11-18T07:00:00Z"}],
    }
    [event] = yunexpress.parse(orjson.dumps({"data_code": "tisPushData", "data": parcel}), NOW)
    assert (event.last_mile_carrier, event.last_mile_tracking_number) == ("usps", "92612999897543581234")
    body = {
        "code": 0,
        "result": [
            {
                "tracking_number": "UG123456785YP",
                "exchange_number": "RS123456785DE",
                "last_mile_carrier": "Deutsche Post",
                "checkpoints": [{"time_stamp": "2026-11-18 11:00:00", "time_zone": "+8", "tracking_status": "PU10"}],
            }
        ],
    }
    [scan] = yanwen.parse(orjson.dumps(body), NOW)
    assert scan.last_mile_tracking_number == "RS123456785DE"
    assert scan.last_mile_carrier  # a known slug or the name as Yanwen gives it


# --- 7. YunExpress's older camelCase push -----------------------------------------------------


def _camel_case_parcel(number: str) -> dict[str, Any]:
    """The older shape: YunExpress v1 tracking fields (WaybillNumber, TrackingNumber,
    OrderTrackingDetails[ProcessDate, ProcessContent, ProcessLocation, TrackNodeCode]) in camelCase."""
    return {
        "wayBillNumber": number,
        "trackingNumber": "92612999897543581234",
        "countryCode": "US",
        "lastMileName": "USPS",
        "orderTrackingDetails": [
            {
                "processDate": "2026-11-18 15:00:00",
                "processContent": "Picked up",
                "processLocation": "Shenzhen",
                "processCountry": "CN",
                "trackNodeCode": "PICKED_UP",
            },
            {
                "processDate": "2026-11-24 10:00:00",
                "processContent": "Delivered",
                "processLocation": "New York",
                "processCountry": "US",
                "trackNodeCode": "DELIVERED",
            },
        ],
    }


@pytest.mark.parametrize("wrap", ["bare", "data", "pascal"])
def test_yunexpress_camel_case_push(wrap: str) -> None:
    parcel = _camel_case_parcel("YT2412345678901234")
    if wrap == "pascal":
        document: Any = {
            "ResultCode": "0000",
            "Item": {
                "WaybillNumber": parcel["wayBillNumber"],
                "OrderTrackingDetails": [
                    {key[0].upper() + key[1:]: value for key, value in detail.items()}
                    for detail in parcel["orderTrackingDetails"]
                ],
            },
        }
    else:
        document = parcel if wrap == "bare" else {"data": parcel}
    picked_up, delivered = yunexpress.parse(orjson.dumps(document), NOW)
    assert (picked_up.tracking_number, picked_up.carrier_code, picked_up.status) == (
        "YT2412345678901234",
        "PICKED_UP",
        CanonicalStatus.ACCEPTED,
    )
    # Local times in the country of the scan: Shenzhen UTC+8, New York (US default zone) in November.
    assert picked_up.occurred_at.isoformat() == "2026-11-18T07:00:00+00:00"
    assert delivered.status is CanonicalStatus.DELIVERED
    assert delivered.occurred_at.isoformat() == "2026-11-24T16:00:00+00:00"


def test_yunexpress_camel_case_push_without_code_names_the_field() -> None:
    parcel = _camel_case_parcel("YT2412345678901234")
    del parcel["orderTrackingDetails"][0]["trackNodeCode"]
    with pytest.raises(ValueError, match=r"track_node_code.*camelCase"):
        yunexpress.parse(orjson.dumps(parcel), NOW)


def test_yunexpress_older_push_with_numeric_tracking_status() -> None:
    """A real older push shape: events with ``trackingStatus`` (the v1 API's numeric table)
    and no ``trackNodeCode`` were dead-lettered ("no code"); they map through the table."""
    parcel = _camel_case_parcel("YT2412345678909999")
    statuses = [4, 3]
    for detail, status in zip(parcel["orderTrackingDetails"], statuses, strict=True):
        del detail["trackNodeCode"]
        detail["trackingStatus"] = status
    parcel["orderTrackingDetails"].insert(
        0, {"processDate": "2026-11-17 09:00:00", "processContent": "Order created", "trackingStatus": "1"}
    )
    parcel["orderTrackingDetails"].append(
        {"processDate": "2026-11-25 09:00:00", "processContent": "Status unknown", "trackingStatus": 0}
    )
    created, received, delivered = yunexpress.parse(orjson.dumps({"data": parcel}), NOW)
    assert [(e.carrier_code, e.status) for e in (created, received, delivered)] == [
        ("trackingStatus:1", CanonicalStatus.INFO_RECEIVED),
        ("trackingStatus:4", CanonicalStatus.ACCEPTED),
        ("trackingStatus:3", CanonicalStatus.DELIVERED),
    ]
    assert received.occurred_at.isoformat() == "2026-11-18T07:00:00+00:00"
