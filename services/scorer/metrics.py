"""The scorer's Prometheus metrics (docs/metrics.md). No seller ids as labels."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.observability import LATENCY_BUCKETS

RECORDS = Counter("vtr_scorer_records_total", "Records consumed by topic and outcome.", ["topic", "outcome"])
BATCH_SIZE = Histogram(
    "vtr_scorer_batch_size",
    "Records per applied batch.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
BATCH_DURATION = Histogram(
    "vtr_scorer_batch_duration_seconds", "Time to apply one batch, fetch to commit.", buckets=LATENCY_BUCKETS
)
DB_TRANSACTION = Histogram(
    "vtr_scorer_db_transaction_seconds", "Database work per batch inside its transaction.", buckets=LATENCY_BUCKETS
)
BATCHES_PLANNED_AHEAD = Counter(
    "vtr_scorer_batches_planned_ahead_total",
    "Batches read and evaluated while the one before was written, by what became of the plan "
    "(used; stale: the batch before touched the same parcels, or another batch came; conflict: "
    "a row changed under it, planned again in the transaction).",
    ["outcome"],
)
CONSUMER_LAG = Gauge("vtr_scorer_consumer_lag", "Records behind the high watermark.", ["topic", "partition"])
LAST_EVENT = Gauge("vtr_scorer_last_event_timestamp_seconds", "received_at of the newest applied record.")
PACKAGES = Gauge("vtr_scorer_packages", "Packages in the current window by state.", ["state"])
PACKAGES_BY_REASON = Gauge(
    "vtr_scorer_packages_by_reason",
    "Packages not (yet) valid in the current window and the next 14 days, by state and reason.",
    ["state", "reason"],
)
SELLER_CATEGORIES = Gauge(
    "vtr_scorer_seller_categories", "Seller x category pairs by risk level.", ["level", "marketplace"]
)
SCORES_PUBLISHED = Counter("vtr_scorer_scores_published_total", "Snapshots produced to vtr.scores.v1.")
OUTBOX_BACKLOG = Gauge("vtr_scorer_outbox_backlog", "Changed seller-categories not yet published.")
CLOCK_RUNS = Counter("vtr_scorer_clock_runs_total", "Clock job runs by outcome.", ["outcome"])
EXPIRED_PACKAGES = Counter(
    "vtr_scorer_expired_packages_total", "Pending packages turned invalid by the clock job (promised date passed)."
)
REVIEWED_PACKAGES = Counter(
    "vtr_scorer_reviewed_packages_total", "Pending packages whose probability the clock job recomputed."
)
MODEL_REFRESH_SECONDS = Histogram(
    "vtr_scorer_model_refresh_seconds", "Time to rebuild the forecast model from the packages.", buckets=LATENCY_BUCKETS
)
CARRIER_SILENT_HOURS = Gauge(
    "vtr_scorer_carrier_silent_hours",
    "Hours since the newest scan of a carrier from an origin (all sellers).",
    ["carrier", "origin"],
)
CARRIER_SCAN_RATE = Gauge(
    "vtr_scorer_carrier_usual_scans_per_hour",
    "A carrier's usual scans per hour from an origin over the past week (the last day excluded).",
    ["carrier", "origin"],
)
CARRIER_SILENT = Gauge(
    "vtr_scorer_carrier_silent",
    "1 while a carrier from an origin has sent far fewer scans than usual (its parcels' probabilities are lowered).",
    ["carrier", "origin"],
)
SOURCE_OUTAGE = Gauge(
    "vtr_scorer_source_outage",
    "1 while every carrier behind a push source is silent at once and other carriers scan (a source outage).",
    ["source"],
)
SOURCE_CARRIERS = Gauge(
    "vtr_scorer_source_carriers",
    "Carriers (per origin) whose recent scans came mostly through a push source.",
    ["source"],
)
MODEL_REFRESHES = Counter(
    "vtr_scorer_model_refreshes_total", "Rebuilds of the forecast model by what triggered them.", ["reason"]
)
MODEL_PACKAGES = Gauge("vtr_scorer_model_packages", "Packages the current forecast model was built from.")
READ_ANSWERS = Counter(
    "vtr_scorer_read_answers_total", "GET .../vtr answers by source (the read cache or computed).", ["source"]
)
READ_CACHE_SELLERS = Gauge("vtr_scorer_read_cache_sellers", "Sellers whose GET .../vtr answer is cached.")
AMAZON_VTR_MAX_DIFFERENCE = Gauge(
    "vtr_scorer_amazon_vtr_max_difference_points",
    "Largest |vtrwatch VTR - Amazon's VTR| over Amazon's reporting range, in percentage points, "
    "across seller x marketplaces with an Amazon report.",
)
AMAZON_VTR_OVER_THRESHOLD = Gauge(
    "vtr_scorer_amazon_vtr_differences_over_threshold",
    "Seller x marketplaces whose vtrwatch VTR differs from Amazon's by more than one point.",
)
AMAZON_VTR_BAD = Gauge("vtr_scorer_amazon_vtr_bad", "Seller x marketplaces whose Amazon VTR status is BAD.")
