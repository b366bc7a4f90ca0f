"""The ingest's Prometheus metrics (docs/metrics.md). Labels are bounded: sources,
carrier slugs, canonical statuses, outcomes, topics; never tracking numbers or sellers."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.observability import LATENCY_BUCKETS

WEBHOOKS = Counter("vtr_ingest_webhooks", "Carrier pushes by result.", ["carrier", "outcome"])
LAST_WEBHOOK = Gauge(
    "vtr_ingest_last_webhook_timestamp_seconds", "Unix time of the last authenticated push.", ["carrier"]
)
EVENTS_PRODUCED = Counter(
    "vtr_ingest_events_produced", "Canonical tracking events put on Kafka.", ["carrier", "status"]
)
UNMAPPED_CODES = Counter("vtr_ingest_unmapped_codes", "Events whose carrier code is not in the mapping.", ["carrier"])
DUPLICATE_EVENTS = Counter(
    "vtr_ingest_duplicate_events", "Events skipped because they were produced recently (re-sent history).", ["carrier"]
)
DEADLETTERS = Counter("vtr_ingest_deadletters", "Request bodies sent to vtr.deadletter.v1.", ["origin"])
SHIPMENTS = Counter("vtr_ingest_shipments", "Shipment records by kind and outcome.", ["kind", "outcome"])
PRODUCE_LATENCY = Histogram(
    "vtr_ingest_produce_latency_seconds",
    "Time from send to broker acknowledgement (acks=all).",
    ["topic"],
    buckets=LATENCY_BUCKETS,
)

ACCEPTED = "accepted"
UNAUTHORIZED = "unauthorized"
INVALID = "invalid"
TOO_LARGE = "too_large"
UNAVAILABLE = "unavailable"
REGISTRATIONS = Counter(
    "vtr_ingest_registrations",
    "Tracking numbers sent to an aggregator for registration, by outcome.",
    ["aggregator", "outcome"],
)
REGISTRATION_CALLS = Counter(
    "vtr_ingest_registration_calls",
    "Calls to an aggregator's registration API, by HTTP status.",
    ["aggregator", "outcome"],
)
YANWEN_POLLS = Counter(
    "vtr_ingest_yanwen_polls", "Calls to Yanwen's tracking query by the poller, by outcome.", ["outcome"]
)
YANWEN_OPEN_PARCELS = Gauge(
    "vtr_ingest_yanwen_open_parcels", "Yanwen parcels the poller asked about in its last round."
)
