"""The pure parsers: statuses from the tables, zones, identities, errors that name fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.carriers import aftership, china_post, seventeen_track, yanwen, yunexpress
from services.ingest.carriers.common import PushError
from services.ingest.timezones import to_utc
from shared.schemas import CanonicalStatus
from shared.status_codes import MAPPING_FILE, MAPPINGS, load_mappings
from shared.utc_offset import TimeFormatError, parse_utc_offset

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_every_code_in_carriers_md_is_mapped() -> None:
    assert MAPPINGS["china-post"].status("705") is CanonicalStatus.ATTEMPTED_DELIVERY
    assert MAPPINGS["yunexpress"].status("CUSTOMS_INSPCTION") is CanonicalStatus.EXCEPTION
    assert MAPPINGS["yanwen"].status("LM50") is CanonicalStatus.ATTEMPTED_DELIVERY
    assert MAPPINGS["aftership"].status("AvailableForPickup") is CanonicalStatus.OUT_FOR_DELIVERY


@pytest.mark.parametrize(
    ("sub_status", "status"),
    [
        ("InfoReceived", CanonicalStatus.INFO_RECEIVED),
        ("InTransit_PickedUp", CanonicalStatus.ACCEPTED),
        ("InTransit_CustomsProcessing", CanonicalStatus.IN_TRANSIT),
        ("InTransit_Arrival", CanonicalStatus.ARRIVED_DESTINATION),
        ("AvailableForPickup_Other", CanonicalStatus.OUT_FOR_DELIVERY),
        ("OutForDelivery_Other", CanonicalStatus.OUT_FOR_DELIVERY),
        ("DeliveryFailure_NoBody", CanonicalStatus.ATTEMPTED_DELIVERY),
        ("Delivered_Other", CanonicalStatus.DELIVERED),
        ("Exception_Returned", CanonicalStatus.RETURNED),
        ("Exception_Lost", CanonicalStatus.EXCEPTION),
        ("Expired_Other", CanonicalStatus.EXCEPTION),
        ("Teleported_Other", CanonicalStatus.UNKNOWN),
    ],
)
def test_17track_sub_statuses(sub_status: str, status: CanonicalStatus) -> None:
    assert MAPPINGS["17track"].status(sub_status) is status


def test_unmapped_code_is_unknown_with_the_raw_code_kept() -> None:
    body = orjson.dumps({"traces": [{"waybillNo": "rr1", "opTime": "2026-11-18 10:00:00", "opCode": "747"}]})
    [event] = china_post.parse_traces_push(body, NOW)
    assert event.status is CanonicalStatus.UNKNOWN
    assert event.carrier_code == "747"
    assert event.tracking_number == "RR1"


def test_a_new_code_is_one_line_of_data(tmp_path: object) -> None:
    extended = Path(str(tmp_path)) / "codes.toml"
    text = MAPPING_FILE.read_text(encoding="utf-8").replace(
        '"704" = "DELIVERED"', '"704" = "DELIVERED"\n"747" = "IN_TRANSIT"'
    )
    extended.write_text(text, encoding="utf-8")
    assert load_mappings(extended)["china-post"].status("747") is CanonicalStatus.IN_TRANSIT


def test_a_bad_status_in_the_data_stops_loading(tmp_path: object) -> None:
    broken = Path(str(tmp_path)) / "codes.toml"
    broken.write_text(
        '[x]\nname="x"\nendpoint="/"\nsignature=""\nidentity=""\nack=""\nretries=""\ntimezone="+00:00"\n'
        '[x.codes]\nA = "LOST"\n',
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=r"\[x.codes\]"):
        load_mappings(broken)


@pytest.mark.parametrize(
    ("text", "hours"), [("+8", 8), ("+08", 8), ("+08:00", 8), ("-05:00", -5), ("UTC+8", 8), ("+0530", 5.5)]
)
def test_utc_offsets(text: str, hours: float) -> None:
    offset = parse_utc_offset(text).utcoffset(None)
    assert offset is not None
    assert offset.total_seconds() == hours * 3600


@pytest.mark.parametrize("text", ["8", "+25", "Asia/Shanghai", ""])
def test_bad_offsets(text: str) -> None:
    with pytest.raises(TimeFormatError):
        parse_utc_offset(text)


@given(
    # The calendar the system accepts (shared.guard.EARLIEST..LATEST), a day inside each edge.
    moment=st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30)),
    offset_minutes=st.integers(min_value=-14 * 60, max_value=14 * 60),
    separator=st.sampled_from(["T", " "]),
    timespec=st.sampled_from(["seconds", "milliseconds", "microseconds"]),
)
def test_local_times_convert_exactly_like_replace_then_astimezone(
    moment: datetime, offset_minutes: int, separator: str, timespec: str
) -> None:
    # to_utc shifts the wall time instead of calling replace(tzinfo=...).astimezone(UTC).
    zone = timezone(timedelta(minutes=offset_minutes))
    text = moment.isoformat(sep=separator, timespec=timespec)
    expected = datetime.fromisoformat(text).replace(tzinfo=zone).astimezone(UTC)
    converted = to_utc(text, zone)
    assert converted == expected
    assert converted.isoformat() == expected.isoformat()  # the event id hashes this text


def test_times_with_an_offset_or_a_bare_date_keep_their_meaning() -> None:
    shanghai = parse_utc_offset("+08:00")
    assert to_utc("2026-11-20T08:00:00Z", shanghai) == datetime(2026, 11, 20, 8, tzinfo=UTC)
    assert to_utc("2026-11-20T08:00:00-05:00", shanghai) == datetime(2026, 11, 20, 13, tzinfo=UTC)
    assert to_utc("2026-11-20", shanghai) == datetime(2026, 11, 19, 16, tzinfo=UTC)


@pytest.mark.parametrize(
    "text", ["0001-01-01 00:00:00", "9999-12-31T23:59:59-14:00", "1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z"]
)
def test_out_of_range_time_is_an_error_not_a_crash(text: str) -> None:
    with pytest.raises(TimeFormatError):
        to_utc(text, parse_utc_offset("+08:00"))


def test_yanwen_zones_per_checkpoint() -> None:
    body = orjson.dumps(
        {
            "result": [
                {
                    "tracking_number": "UG1",
                    "checkpoints": [
                        {"time_stamp": "2026-11-20 08:00:00", "time_zone": -5, "tracking_status": "LM25"},
                        {"time_stamp": "2026-11-18 08:00:00", "tracking_status": "PU10"},
                    ],
                }
            ]
        }
    )
    ofd, accepted = yanwen.parse(body, NOW)
    assert ofd.occurred_at == datetime(2026, 11, 20, 13, tzinfo=UTC)
    assert accepted.occurred_at == datetime(2026, 11, 18, 0, tzinfo=UTC)  # Yanwen default +08:00


def test_yunexpress_falls_back_to_local_time_and_rejects_a_missing_time() -> None:
    parcel = {
        "waybill_number": "YT1",
        "track_events": [{"track_node_code": "DELIVERED", "process_time": "2026-11-20 08:00:00"}],
    }
    [event] = yunexpress.parse(orjson.dumps({"data_code": "tisPushData", "data": parcel}), NOW)
    assert event.occurred_at == datetime(2026, 11, 20, 0, tzinfo=UTC)
    del parcel["track_events"][0]["process_time"]  # type: ignore[index, attr-defined]
    with pytest.raises(PushError, match=r"\$.data.track_events\[0\]: process_utc_time or process_time"):
        yunexpress.parse(orjson.dumps({"data": parcel}), NOW)


def test_yunexpress_refuses_another_data_code() -> None:
    with pytest.raises(PushError, match="data_code"):
        yunexpress.parse(b'{"data_code": "somethingElse", "data": {"waybill_number": "YT1"}}', NOW)


def test_17track_carriers_and_stopped_pushes() -> None:
    assert seventeen_track.carrier_of(190008) == "yunexpress"
    assert seventeen_track.carrier_of("3011") == "china-post"
    # An unknown numeric key is kept as such; no key at all is the aggregator itself.
    assert seventeen_track.carrier_of(999999) == "999999"
    assert seventeen_track.carrier_of(None) == "17track"
    [stopped] = seventeen_track.parse(b'{"event": "TRACKING_STOPPED", "data": {"number": "X"}}', NOW)
    assert (stopped.notice, stopped.status, stopped.carrier_code) == (
        "tracking_stopped",
        CanonicalStatus.UNKNOWN,
        "TRACKING_STOPPED",
    )


def test_aftership_carriers() -> None:
    assert aftership.carrier_of("china-ems") == "china-post"
    assert aftership.carrier_of("yanwen") == "yanwen"
    assert aftership.carrier_of("some-new-courier") == "aftership"


def test_event_ids_are_deterministic_and_differ_per_scan() -> None:
    body = orjson.dumps(
        {
            "traces": [
                {"waybillNo": "RR1", "opTime": "2026-11-18 10:00:00", "opCode": "203"},
                {"waybillNo": "RR1", "opTime": "2026-11-18 10:00:00", "opCode": "954"},
            ]
        }
    )
    first = china_post.parse_traces_push(body, NOW)
    again = china_post.parse_traces_push(body, datetime(2026, 12, 1, tzinfo=UTC))
    assert [event.event_id for event in first] == [event.event_id for event in again]
    assert first[0].event_id != first[1].event_id


def test_errors_name_the_field() -> None:
    with pytest.raises(PushError, match=r"\$.traces\[0\].opTime"):
        china_post.parse_traces_push(b'{"traces": [{"waybillNo": "A", "opTime": "yesterday", "opCode": 1}]}', NOW)
    with pytest.raises(PushError, match=r"\$.traces\[0\].waybillNo"):
        china_post.parse_traces_push(b'{"traces": [{"opTime": "2026-11-18 10:00:00", "opCode": 1}]}', NOW)
    with pytest.raises(PushError, match=r"missing required field `opCode`"):
        china_post.parse_ems_payload(b'[{"waybillNo": "A", "opTime": "2026-11-18 10:00:00"}]', NOW)
    with pytest.raises(PushError, match=r"\$.data.number"):
        seventeen_track.parse(b'{"event": "TRACKING_UPDATED", "data": {"number": "  "}}', NOW)


def test_china_post_envelopes() -> None:
    assert china_post.parse_envelope(b"logitcsInterface=abc&serialNo=1&senderNo=2", "") == china_post.EmsEnvelope(
        "abc", "1", "2"
    )
    assert china_post.parse_envelope(b'{"logitcsInterface": "abc", "serialNo": 7}', "application/json") == (
        china_post.EmsEnvelope("abc", "7", "")
    )
    assert china_post.parse_envelope(b"logitcsInterface=|$4|ab+c/d==", "") == china_post.EmsEnvelope(
        "|$4|ab+c/d==", "", ""
    )
    assert china_post.parse_envelope(b"[1, 2]", "application/json") is None
    assert china_post.parse_envelope(b"\xff\xfe", "text/plain") is None
    assert china_post.parse_envelope(b"serialNo=1", "") is None
