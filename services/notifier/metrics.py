"""The notifier's metrics, exactly as catalogued in docs/metrics.md (no seller ids or addresses)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.observability import LATENCY_BUCKETS

SNAPSHOTS = Counter("vtr_notifier_snapshots_total", "Score snapshots consumed.", ["outcome"])
TRANSITIONS = Counter("vtr_notifier_transitions_total", "Alert state changes, by the new level.", ["level"])
NOTIFICATIONS = Counter(
    "vtr_notifier_notifications_total",
    "Delivery attempts by channel, level and outcome.",
    ["channel", "level", "outcome"],
)
SEND_DURATION = Histogram(
    "vtr_notifier_send_duration_seconds",
    "Time to hand one message to SMTP or Slack.",
    ["channel"],
    buckets=(*LATENCY_BUCKETS, 30.0),
)
OUTBOX_BACKLOG = Gauge("vtr_notifier_outbox_backlog", "Notifications written but not yet sent.", ["channel"])
OUTBOX_OLDEST_AGE = Gauge(
    "vtr_notifier_outbox_oldest_age_seconds", "Age of the oldest unsent notification.", ["channel"]
)
CONSUMER_LAG = Gauge("vtr_notifier_consumer_lag", "Score records behind the high watermark.", ["topic", "partition"])
PARKED = Counter(
    "vtr_notifier_parked_total",
    "Notifications parked (marked failed) after repeated unforeseen errors in composing or sending.",
    ["channel"],
)
AMAZON_STATUSES = Counter(
    "vtr_notifier_amazon_statuses_total",
    "Amazon VTR figures consumed, by outcome (turned_bad: a seller message was decided; kept; invalid).",
    ["outcome"],
)
