"""Notifier settings (environment variables prefixed ``VTR_``).

Every duration is in seconds so tests can shrink them to fractions of a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from shared.settings import LOCAL_STATE_DIR, ServiceSettings, comma_separated, secret_field

HOUR = 3600.0
DAY = 24 * HOUR


class NotifierSettings(ServiceSettings):
    service_name: ClassVar[str] = "notifier"

    http_port: int = 8002
    consumer_group: str = "vtr-notifier"
    scores_topic: str = "vtr.scores.v1"

    scorer_url: str = "http://127.0.0.1:8001"
    scorer_api_key: SecretStr = secret_field(
        default="dev-api-key", description="Bearer token for the scorer's API (one of its VTR_API_KEYS)."
    )
    scorer_timeout_seconds: float = Field(default=5.0, gt=0)
    #: How long an alert may wait for the scorer's package list before it goes out without it.
    scorer_wait_seconds: float = Field(default=120.0, ge=0)
    #: Packages listed per message.
    package_list_limit: int = Field(default=20, ge=0, le=100)

    #: Base of the links to the seller console in every message; empty: ``VTR_SCORER_URL`` (the scorer serves it).
    console_url: str = ""
    console_secret: SecretStr = secret_field(
        default="dev-console-secret",
        description="Key of the HMAC that signs console links (the scorer's VTR_CONSOLE_SECRET, same value).",
    )
    #: Days a console link in a message stays valid.
    console_link_days: float = Field(default=7.0, gt=0, le=90)

    #: ``smtp://user:pass@host:587?starttls=true`` or ``smtps://...``; empty: write .eml files.
    smtp_url: SecretStr = secret_field(
        default="", description="Required in prod: without it messages are only written to files."
    )
    smtp_timeout_seconds: float = Field(default=15.0, gt=0)
    mail_from: str = "vtrwatch <alerts@vtrwatch.local>"
    #: Where local runs (no SMTP URL) write .eml files and Slack JSON instead of sending.
    outbox_dir: Path = LOCAL_STATE_DIR / "outbox"
    slack_allowed_prefixes: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["https://hooks.slack.com/"])
    slack_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Tests and local stand-ins only: let Slack posts reach loopback and private addresses
    #: (refused in prod). Redirects are never followed either way.
    slack_allow_private_addresses: bool = False

    #: An escalation must hold this long (and the scorer be caught up) before it is sent.
    debounce_seconds: float = Field(default=60.0, ge=0)
    #: A better level must hold this long before the seller is told.
    deescalation_hold_seconds: float = Field(default=DAY, ge=0)
    #: While a level holds, remind at most this often.
    reminder_interval_seconds: float = Field(default=DAY, gt=0)
    #: ``per_category``: one reminder per category and interval; ``daily_digest``: one
    #: message per seller listing every category still at risk.
    reminder_mode: Literal["per_category", "daily_digest"] = "per_category"
    #: How often the digest schedule is looked at (digest mode only).
    digest_check_seconds: float = Field(default=60.0, gt=0)
    #: How often pending transitions and reminders are re-evaluated without new snapshots.
    tick_seconds: float = Field(default=5.0, gt=0)

    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    outbox_batch_size: int = Field(default=50, ge=1)
    retry_base_seconds: float = Field(default=5.0, gt=0)
    retry_max_seconds: float = Field(default=900.0, gt=0)
    #: After this long without success a notification is marked failed.
    give_up_after_seconds: float = Field(default=2 * DAY, gt=0)
    #: A worker's claim on an outbox row expires after this long (crashed worker).
    claim_seconds: float = Field(default=120.0, gt=0)

    @field_validator("slack_allowed_prefixes", mode="before")
    @classmethod
    def _split_prefixes(cls, value: Any) -> Any:
        return comma_separated(value)

    def _refuse_unsafe_prod_config(self) -> None:
        problems = []
        try:
            super()._refuse_unsafe_prod_config()
        except ValueError as error:
            problems.append(str(error).partition(": ")[2])
        if self.slack_allow_private_addresses:
            problems.append("VTR_SLACK_ALLOW_PRIVATE_ADDRESSES is for tests and local runs only")
        if problems:
            raise ValueError("refusing to start in prod: " + "; ".join(problems))

    @property
    def console_base(self) -> str:
        return self.console_url or self.scorer_url

    @property
    def deliver_live(self) -> bool:
        return bool(self.smtp_url.get_secret_value())
