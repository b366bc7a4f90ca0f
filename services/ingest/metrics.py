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
AMAZON_CALLS = Counter(
    "vtr_ingest_amazon_calls",
    "Calls to SP-API and Login with Amazon, by operation and HTTP status.",
    ["operation", "outcome"],
)
AMAZON_CONNECTIONS = Gauge(
    "vtr_ingest_amazon_connections", "Sellers' Amazon connections by state (connected, reconnect_needed).", ["state"]
)
AMAZON_REVOKED = Counter(
    "vtr_ingest_amazon_authorisations_revoked",
    "Times a seller's Amazon authorisation was found revoked (LWA invalid_grant, SP-API 401/403).",
)
AMAZON_CONFIRMATIONS = Counter(
    "vtr_ingest_amazon_confirmations",
    "Shipment messages read from SP-API orders, by kind (confirmed, cancelled) and outcome.",
    ["kind", "outcome"],
)
AMAZON_CARRIER_NAME_FLAGS = Counter(
    "vtr_ingest_amazon_carrier_name_flags",
    "Amazon-recorded packages whose carrier name is not spelled as in Amazon's carrier list, by reason.",
    ["reason"],
)
AMAZON_ERP_DISAGREEMENTS = Counter(
    "vtr_ingest_amazon_erp_disagreements",
    "Orders confirmed by both the seller's ERP and Amazon whose field differs, by field.",
    ["field"],
)
AMAZON_UNCATEGORISED = Counter(
    "vtr_ingest_amazon_uncategorised", "Amazon orders put in the Uncategorised bucket, by reason.", ["reason"]
)
AMAZON_OLDEST_ROUND = Gauge(
    "vtr_ingest_amazon_oldest_round_seconds",
    "Age of the oldest round (a seller and region's orders and report) still running; 0 when none runs. "
    "A round waits on Amazon's usage plans, so minutes are normal; hours are a stuck round.",
)
AMAZON_REPORTS = Counter(
    "vtr_ingest_amazon_reports", "Seller performance reports, by how they ended (DONE, FATAL, ...).", ["outcome"]
)
