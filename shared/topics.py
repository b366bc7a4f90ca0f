"""Topic names and their Kafka configuration.

Both inputs of the scorer (shipments and tracking events) are keyed by the normalised
tracking number and created with the same partition count, so partition *i* of both
topics holds every message of the same packages and one scorer instance sees all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TRACKING_EVENTS = "vtr.tracking-events.v1"
SHIPMENTS = "vtr.shipments.v1"
SCORES = "vtr.scores.v1"
DEADLETTER = "vtr.deadletter.v1"
#: Amazon's own VTR per seller x marketplace (its performance report), key: seller id. A
#: topic of its own, not the shipments topic's: the input topics are keyed by tracking
#: number and co-partitioned for the scorer's package state, and every shipments reader
#: (scorer, registrar, Yanwen poller) would have to step over account-level figures.
AMAZON_VTR = "vtr.amazon-vtr.v1"
#: The Amazon worker's own state (connections with their sealed refresh tokens, order
#: cursors, report times), compacted: key ``connection:<seller>``, ``cursor:<seller>``, ...
AMAZON_STATE = "vtr.amazon-state.v1"

#: Dead letters carry a whole rejected request body; leave room for the envelope.
DEADLETTER_OVERHEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    #: Topic-level configs (``retention.ms``, ``max.message.bytes``, ...).
    config: dict[str, str] = field(default_factory=dict)


def normalise_tracking_number(tracking_number: str) -> str:
    """Tracking numbers are compared after trimming and upper-casing (carriers.md)."""
    return tracking_number.strip().upper()


#: The largest body the ingest accepts by default (a batch of shipment records): the
#: dead-letter topic must take it, whichever service creates the topic first.
LARGEST_BODY_BYTES = 8 * 1024 * 1024


def deadletter_spec(max_body_bytes: int = LARGEST_BODY_BYTES) -> TopicSpec:
    # Base64 makes the body a third larger; the envelope adds a little more.
    size = max_body_bytes * 4 // 3 + DEADLETTER_OVERHEAD_BYTES
    return TopicSpec(DEADLETTER, {"max.message.bytes": str(size)})


INPUT_TOPICS = (TopicSpec(SHIPMENTS), TopicSpec(TRACKING_EVENTS))
SCORES_TOPIC = TopicSpec(SCORES)
AMAZON_VTR_TOPIC = TopicSpec(AMAZON_VTR)
AMAZON_STATE_TOPIC = TopicSpec(AMAZON_STATE, {"cleanup.policy": "compact"})
