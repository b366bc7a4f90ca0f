"""``replay-deadletters`` against the real broker: parked bodies that today's parsers read
become events (once, by id), bodies that still fail are reported, filters and dry runs hold."""

from __future__ import annotations

import base64
import dataclasses
import io
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from services.ingest import replay as replay_module
from services.ingest.api.webhooks import webhook_sources
from services.ingest.carriers.source import WebhookSource
from services.ingest.publisher import Publisher, Record
from services.ingest.replay import main, replay
from services.ingest.settings import IngestSettings
from shared.schemas import DEADLETTER_CODEC, DeadLetter, TrackingEvent
from shared.topics import DEADLETTER
from tests.ingest.samples import SAMPLE_PUSHES, unique_number
from tests.ingest.test_webhooks import events_of, post


async def _park(settings: IngestSettings, letters: list[DeadLetter]) -> None:
    publisher = Publisher(settings)
    await publisher.start()
    try:
        await publisher.publish(
            [Record(DEADLETTER, letter.origin.encode(), DEADLETTER_CODEC.encode(letter)) for letter in letters]
        )
    finally:
        await publisher.stop()


def _letter(origin: str, body: bytes, received_at: datetime, content_type: str = "application/json") -> DeadLetter:
    return DeadLetter(
        origin=origin,
        reason="parked by an older parser",
        raw_base64=base64.b64encode(body).decode(),
        content_type=content_type,
        received_at=received_at,
    )


async def test_replay_produces_the_events_of_parked_bodies_once(ingest_settings: IngestSettings) -> None:
    # Letters dated in the future of every other test's, so `since` selects only these.
    since = datetime.now(UTC) + timedelta(days=3650 + len(unique_number()))
    readable = [unique_number() for _ in range(2)]
    ems_number = unique_number("LK")
    ems = SAMPLE_PUSHES["china-post"](ingest_settings, ems_number)  # SM4-encrypted: decrypted again
    letters = [
        _letter("17track", SAMPLE_PUSHES["17track"](ingest_settings, readable[0]).body, since),
        _letter("aftership", SAMPLE_PUSHES["aftership"](ingest_settings, readable[1]).body, since),
        _letter("china-post", ems.body, since + timedelta(seconds=1), ems.headers["content-type"]),
        _letter("17track", b'{"event": "TRACKING_UPDATED", "data": {"number": " "}}', since),
        _letter("shipments", b"[]", since),
        _letter("17track", SAMPLE_PUSHES["17track"](ingest_settings, unique_number()).body, since - timedelta(days=1)),
    ]
    await _park(ingest_settings, letters)

    dry = await replay(ingest_settings, since=since, dry_run=True)
    origins = dry.as_dict()["origins"]
    assert origins == {
        "17track": {
            "letters": 2,
            "replayed": 1,
            "events": 3,
            "still_failing": 1,
            "reasons": {"$.data.number: a tracking number is required": 1},
        },
        "aftership": {"letters": 1, "replayed": 1, "events": 4, "still_failing": 0, "reasons": {}},
        "china-post": {"letters": 1, "replayed": 1, "events": 4, "still_failing": 0, "reasons": {}},
    }
    assert dry.skipped >= 1  # the shipments letter is not a webhook body
    assert await events_of(ingest_settings, readable[0], 1, settle=0.5) == []  # a dry run produces nothing

    only = await replay(ingest_settings, since=since, origins=["aftership"])
    assert set(only.by_origin) == {"aftership"}
    await replay(ingest_settings, since=since)
    await replay(ingest_settings, since=since)  # again: the same ids, nothing new downstream

    seventeen = await events_of(ingest_settings, readable[0], 6)
    assert set(Counter(event.event_id for event in seventeen).values()) == {2}  # two runs, same 3 ids
    assert len({event.event_id for event in seventeen}) == 3
    assert len({event.event_id for event in await events_of(ingest_settings, readable[1], 12)}) == 4
    china_post = await events_of(ingest_settings, ems_number, 8)
    assert {event.carrier for event in china_post} == {"china-post"}


async def test_a_parked_push_replays_to_the_same_events_as_a_good_push(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings, capsys: object
) -> None:
    number = unique_number()
    push = SAMPLE_PUSHES["yanwen"](ingest_settings, number)
    assert (await post(ingest, push)).status_code == 200
    live = {event.event_id for event in await events_of(ingest_settings, number, 3)}
    since = datetime.now(UTC) + timedelta(days=36500)
    await _park(ingest_settings, [_letter("yanwen", push.body, since)])
    summary = await replay(ingest_settings, since=since, origins=["yanwen"])
    assert summary.as_dict()["origins"] == {
        "yanwen": {"letters": 1, "replayed": 1, "events": 3, "still_failing": 0, "reasons": {}}
    }
    replayed = {event.event_id for event in await events_of(ingest_settings, number, 6)}
    assert replayed == live


def test_the_command_prints_a_json_summary_and_refuses_unknown_origins(
    ingest_settings: IngestSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VTR_KAFKA_BOOTSTRAP", ingest_settings.kafka_bootstrap)
    out = io.StringIO()
    far = (datetime.now(UTC) + timedelta(days=365 * 200)).isoformat()
    assert main(["--dry-run", "--since", far, "--origin", "17track"], out) == 0
    summary = orjson.loads(out.getvalue())
    assert (summary["dry_run"], summary["origins"]) == (True, {})
    with pytest.raises(SystemExit):
        main(["--origin", "dhl"])


async def test_a_body_whose_parser_raised_the_unforeseen_is_still_failing_not_a_crash(
    ingest_settings: IngestSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def choking(_payload: bytes, _received_at: datetime, _context: object) -> list[TrackingEvent]:
        raise KeyError("nothing foresaw this")

    def sources(settings: IngestSettings) -> dict[str, WebhookSource]:
        found = webhook_sources(settings)
        return {**found, "aftership": dataclasses.replace(found["aftership"], parse=choking)}

    monkeypatch.setattr(replay_module, "webhook_sources", sources)
    since = datetime.now(UTC) + timedelta(days=36500 + len(unique_number()))
    letters = [
        _letter("aftership", SAMPLE_PUSHES["aftership"](ingest_settings, unique_number()).body, since),
        # Parked by the live path's decoding guard (an escaped NUL), which the replay applies too.
        _letter("yanwen", b'{"code": 0, "result": [{"tracking_number": "A\\u0000B", "checkpoints": []}]}', since),
    ]
    await _park(ingest_settings, letters)
    summary = await replay(ingest_settings, since=since, dry_run=True)
    assert summary.as_dict()["origins"] == {
        "aftership": {
            "letters": 1,
            "replayed": 0,
            "events": 0,
            "still_failing": 1,
            "reasons": {"the push could not be parsed (KeyError)": 1},
        },
        "yanwen": {
            "letters": 1,
            "replayed": 0,
            "events": 0,
            "still_failing": 1,
            "reasons": {"the push contains a NUL character, which cannot be stored": 1},
        },
    }
