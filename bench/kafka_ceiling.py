"""The ceiling for the scorer's consumption: a bare aiokafka consume-and-decode loop over the
same topics (no database, no state), as its own process.

    python -m bench.kafka_ceiling '{"bootstrap": "...", "expected": 200000}'
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer

from shared.schemas import SHIPMENT_CODEC, TRACKING_EVENT_CODEC
from shared.topics import SHIPMENTS, TRACKING_EVENTS

DECODERS = {SHIPMENTS: SHIPMENT_CODEC.decode, TRACKING_EVENTS: TRACKING_EVENT_CODEC.decode}


async def consume(bootstrap: str, expected: int, timeout_seconds: float = 300.0) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        SHIPMENTS,
        TRACKING_EVENTS,
        bootstrap_servers=bootstrap,
        group_id=f"bench-ceiling-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=5000,
    )
    await consumer.start()
    decoded = 0
    started: float | None = None
    try:
        deadline = time.monotonic() + timeout_seconds
        while decoded < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for topic_partition, records in batches.items():
                if started is None:
                    started = time.perf_counter()
                decode = DECODERS[topic_partition.topic]
                for record in records:
                    decode(record.value)
                decoded += len(records)
        elapsed = time.perf_counter() - (started or time.perf_counter())
    finally:
        await consumer.stop()
    return {"records": decoded, "seconds": elapsed, "records_per_second": decoded / elapsed if elapsed else 0.0}


def main() -> None:
    spec = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(consume(spec["bootstrap"], int(spec["expected"])))))


if __name__ == "__main__":
    main()
