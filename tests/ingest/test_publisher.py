"""The publisher's waiting: each ``publish()`` waits on a future of its own, settled by
every batch its records went into; a caller that stops waiting never cancels a batch that
other requests share."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaError, KafkaTimeoutError

from services.ingest.publisher import Publisher, Record, _OpenBatch, _Waiter
from services.ingest.settings import IngestSettings
from shared.topics import TRACKING_EVENTS
from tests.ingest.conftest import keyed, read_topic
from tests.ingest.samples import unique_number


async def delivery(outcome: BaseException | None = None) -> asyncio.Task[None]:
    async def deliver() -> None:
        if outcome is not None:
            raise outcome

    task = asyncio.ensure_future(deliver())
    await asyncio.wait([task])
    return task


def waiting_on(*batches: _OpenBatch) -> _Waiter:
    waiter = _Waiter(asyncio.get_running_loop().create_future())
    for batch in batches:
        batch.waiters.append(waiter)
        waiter.remaining += 1
    return waiter


async def test_a_call_resumes_once_every_batch_of_it_is_acknowledged() -> None:
    first, second = _OpenBatch(None), _OpenBatch(None)  # type: ignore[arg-type]
    both, only_first = waiting_on(first, second), waiting_on(first)
    first.settle(await delivery())
    assert only_first.future.done() and only_first.future.exception() is None
    assert not both.future.done()  # its other batch is still on its way
    second.settle(await delivery())
    assert both.future.done() and both.future.exception() is None


async def test_a_failed_batch_fails_its_callers_at_once() -> None:
    first, second = _OpenBatch(None), _OpenBatch(None)  # type: ignore[arg-type]
    both = waiting_on(first, second)
    second.settle(await delivery(KafkaTimeoutError()))
    assert isinstance(both.future.exception(), KafkaTimeoutError)
    first.settle(await delivery())  # the late success changes nothing
    assert isinstance(both.future.exception(), KafkaTimeoutError)


async def test_a_cancelled_delivery_is_a_broker_failure_and_gone_callers_are_skipped() -> None:
    batch = _OpenBatch(None)  # type: ignore[arg-type]
    gone, waiting = waiting_on(batch), waiting_on(batch)
    gone.future.cancel()
    task = asyncio.ensure_future(asyncio.sleep(10))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    batch.settle(task)  # type: ignore[arg-type]
    assert gone.future.cancelled()
    assert isinstance(waiting.future.exception(), KafkaError)
    assert batch.waiters == []


async def test_a_caller_that_gives_up_does_not_cancel_the_batch_others_share(
    ingest_settings: IngestSettings,
) -> None:
    publisher = Publisher(ingest_settings)
    await publisher.start()
    try:
        numbers = [unique_number() for _ in range(60)]
        records = [Record(TRACKING_EVENTS, number.encode(), number.encode()) for number in numbers]
        warm_up = unique_number().encode()
        await publisher.publish([Record(TRACKING_EVENTS, warm_up, warm_up)])  # partitions known from here on
        calls = [asyncio.create_task(publisher.publish([record])) for record in records]
        await asyncio.sleep(0)  # every call has appended its record and waits
        for call in calls[::3]:
            call.cancel()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes[::3])
        kept = [outcome for index, outcome in enumerate(outcomes) if index % 3]
        assert kept == [None] * len(kept)
        # The cancelled calls' records went out with their batches all the same.
        on_topic = await read_topic(ingest_settings, TRACKING_EVENTS, keyed(*numbers), len(numbers))
        assert sorted(record.key for record in on_topic) == sorted(number.encode() for number in numbers)
    finally:
        await publisher.stop()
