"""Scorer settings (environment variables prefixed ``VTR_``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr

from services.scorer.domain.freshness import FreshnessRules
from services.scorer.domain.levels import LevelThresholds
from services.scorer.domain.policy import DEFAULT_POLICY_FILE
from shared.settings import ServiceSettings, secret_field


class ScorerSettings(ServiceSettings):
    service_name: ClassVar[str] = "scorer"

    http_port: int = 8001

    #: The scoring policy data file (integrated carriers, thresholds, FX, services).
    policy_file: Path = DEFAULT_POLICY_FILE
    #: Days by which the window is shifted back beyond Amazon's [d-30, d-1].
    window_lag_days: int = Field(default=0, ge=0, le=30)

    consumer_group_id: str = "vtr-scorer"
    #: Static group membership (``group.instance.id``): a restart within the session timeout keeps the partitions.
    scorer_instance_id: str | None = None
    batch_max_records: int = Field(default=5000, ge=1)
    poll_timeout_ms: int = Field(default=200, ge=10)
    #: On PostgreSQL, read and evaluate the next batch while this one is written (docs/scoring.md).
    plan_ahead: bool = True

    #: Seconds between runs of the clock job (promised dates passing, window sliding).
    clock_interval_seconds: float = Field(default=60.0, gt=0)
    #: Pending packages turned invalid per clock transaction.
    clock_batch_size: int = Field(default=2000, ge=1)
    #: Seconds between refreshes of the whole-table gauges (packages by state, levels).
    gauges_interval_seconds: float = Field(default=60.0, gt=0)
    #: Per-day counters are kept this many days before today's window (then pruned daily).
    counters_retention_days: int = Field(default=60, ge=0)
    #: Seconds between outbox publication rounds.
    publish_interval_seconds: float = Field(default=0.5, gt=0)
    publish_batch_size: int = Field(default=500, ge=1)
    #: Snapshots say ``caught_up`` while this instance's consumer lag is at most this many records.
    caught_up_max_lag: int = Field(default=1000, ge=0)

    #: Sellers whose computed ``GET .../vtr`` answer is kept in memory (0 = no cache).
    read_cache_sellers: int = Field(default=50_000, ge=0)
    #: Connections of the read API's own PostgreSQL pool (the cache's version checks).
    read_pool_size: int = Field(default=8, ge=1)

    vtr_floor: float = Field(default=0.95, gt=0, le=1)
    at_risk_below: float = Field(default=0.955, gt=0, le=1)
    watch_below: float = Field(default=0.97, gt=0, le=1)
    watch_forecast_below: float = Field(default=0.96, gt=0, le=1)
    min_packages_for_alert: int = Field(default=10, ge=0)
    #: A pending package below this probability of becoming valid in time is "at risk".
    at_risk_probability: float = Field(default=0.9, ge=0, le=1)
    #: ``AT_RISK`` once the probability of falling below the floor within 14 days reaches
    #: this (chosen from ``make evaluate``: see docs/forecast.md).
    at_risk_breach_probability: float = Field(default=0.3, gt=0, le=0.5)
    #: ``WATCH`` once that probability reaches this.
    watch_breach_probability: float = Field(default=0.1, gt=0, le=0.5)
    #: Prior of the share of pending packages' failures that happen together (widens the
    #: forecast band); each lane's is learnt from its matured packages and shrunk to this.
    forecast_correlation: float = Field(default=0.05, ge=0, le=1)
    #: Seconds between rebuilds of the forecast model from the stored packages (it is also
    #: rebuilt as soon as its input changed enough: docs/forecast.md, "Cold start").
    model_refresh_seconds: float = Field(default=300.0, gt=0)
    #: Rebuild the model once the records applied since the last build reach this share of
    #: the packages it was built from.
    model_refresh_new_share: float = Field(default=0.1, gt=0)
    #: A lane (carrier x service x origin x marketplace) is learnt once the model was built
    #: from this many of its packages; until then its categories' levels are capped at WATCH.
    model_lane_min_packages: int = Field(default=20, ge=0)

    console_secret: SecretStr = secret_field(
        default="dev-console-secret",
        description="Key of the HMAC that signs console links (the notifier's VTR_CONSOLE_SECRET, same value).",
    )
    #: Whether staff bearer tokens (``VTR_API_KEYS``) open every seller's console (``true``
    #: or ``false``); unset: on, except with ``VTR_ENV=prod``, where the console is public.
    console_staff_tokens: bool | None = None
    #: Packages per page in the console's list of packages to fix.
    console_page_size: int = Field(default=50, ge=1, le=500)
    #: The notifier's API, for the console's page of notifications sent and the subscription.
    notifier_url: str = "http://127.0.0.1:8002"
    #: The ingest's public address (``https://ingest.example.com``): the console's overview
    #: then offers "Connect Amazon" (``GET /v1/amazon/authorize`` with a signed link, docs/amazon.md).
    #: Empty: no such button.
    ingest_public_url: str = ""
    notifier_api_key: SecretStr = secret_field(
        default="dev-api-key", description="Bearer token for the notifier's API (one of its VTR_API_KEYS)."
    )

    def console_accepts_staff_tokens(self) -> bool:
        """Off by default in prod: the console has a public host, and there an API key would
        open every seller's pages (and the console would tell right keys from wrong ones)."""
        if self.console_staff_tokens is None:
            return self.env != "prod"
        return self.console_staff_tokens

    def freshness_rules(self) -> FreshnessRules:
        return FreshnessRules(new_share=self.model_refresh_new_share, lane_min_packages=self.model_lane_min_packages)

    def level_thresholds(self) -> LevelThresholds:
        return LevelThresholds(
            floor=self.vtr_floor,
            at_risk_below=self.at_risk_below,
            watch_below=self.watch_below,
            watch_forecast_below=self.watch_forecast_below,
            min_packages=self.min_packages_for_alert,
            at_risk_breach_probability=self.at_risk_breach_probability,
            watch_breach_probability=self.watch_breach_probability,
        )
