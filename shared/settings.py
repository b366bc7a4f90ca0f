"""Settings base for every service: environment variables prefixed ``VTR_``.

Each service subclasses :class:`ServiceSettings`, sets its own defaults (port, database
file) and declares its secrets with :func:`secret_field`. In ``prod`` a secret that is
missing or still holds a development default makes the service refuse to start, with a
message that names the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "VTR_"

#: Values that ship as local-run defaults. They are fine on a laptop and refused in prod.
DEV_SECRET_PREFIX = "dev-"  # noqa: S105 - the marker of a non-secret default

#: Where local runs keep their SQLite files and file outboxes.
LOCAL_STATE_DIR = Path(".vtr")


def secret_field(default: str = "", description: str = "") -> Any:
    """A setting that is a secret: never printed, required (non-dev) in prod."""
    return Field(default=SecretStr(default), description=description, json_schema_extra={"secret": True})


def comma_separated(value: Any) -> Any:
    """Parse ``a,b , c`` into ``["a", "b", "c"]`` (environment variables are flat strings)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def local_sqlite_url(service_name: str) -> str:
    return f"sqlite+aiosqlite:///{LOCAL_STATE_DIR / (service_name + '.db')}"


class ServiceSettings(BaseSettings):
    """Settings common to every vtrwatch service."""

    # hide_input_in_errors: a refusal names the variable, never a value (issue 14: the
    # model-level prod check used to print the whole input, other secrets included).
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", validate_default=True, hide_input_in_errors=True
    )

    #: The service's name, used for the default database file and client ids.
    service_name: ClassVar[str] = "vtrwatch"

    #: ``prod`` refuses to start with a missing or development secret, or with SQLite.
    env: Literal["dev", "prod"] = "dev"
    #: Python log level of the JSON logs on stderr.
    log_level: str = "INFO"

    #: Address the HTTP API listens on (``0.0.0.0`` in containers).
    http_host: str = "127.0.0.1"
    #: HTTP port; each service has its own default.
    http_port: int = 8000
    #: Seconds in-flight requests get to finish on SIGTERM.
    drain_seconds: float = 10.0

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=lambda: [SecretStr("dev-api-key")],
        description="Comma-separated bearer tokens accepted on the non-carrier APIs as staff keys with every"
        " scope (unscoped: prefer keys issued with python -m shared.credentials; docs/security.md).",
        json_schema_extra={"secret": True},
    )
    #: Compacted topic of issued and revoked API keys, followed by every service (only the admin principal writes it).
    credentials_topic: str = "vtr.credentials.v1"
    #: Compacted topic where each service instance reports when each key was last used.
    credential_usage_topic: str = "vtr.credential-usage.v1"
    #: Seconds between two reports of keys used (the ``last_used_at`` that ``list`` shows).
    credential_usage_flush_seconds: float = Field(default=30.0, gt=0)
    #: Requests per second each API key may make to one service instance (token bucket refill rate).
    rate_limit_per_second: float = Field(default=20.0, gt=0)
    #: Requests a key may make in a burst before the refill rate applies.
    rate_limit_burst: int = Field(default=60, ge=1)
    #: Per-key limits, ``KEY_ID=RATE[/BURST]`` comma-separated; ``KEY_ID=off`` for none.
    #: Staff and service keys are unlimited unless named here.
    rate_limit_overrides: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: ``json``, ``text`` (one readable line per record) or ``auto``: text on a terminal
    #: outside ``VTR_ENV=prod`` and containers, JSON everywhere else.
    log_format: Literal["auto", "json", "text"] = "auto"

    #: Kafka bootstrap servers, comma-separated ``host:port``.
    kafka_bootstrap: str = "127.0.0.1:9092"
    #: ``SASL_SSL`` for a managed cluster; ``PLAINTEXT`` for the local broker.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    #: SASL mechanism when the protocol is SASL_*.
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    #: SASL user name.
    kafka_sasl_username: str = ""
    #: SASL password (a secret).
    kafka_sasl_password: SecretStr = SecretStr("")
    #: Off by default because the local broker (Tansu) has no idempotent producer.
    kafka_enable_idempotence: bool = False
    #: Partitions of topics the services create; the two input topics must be equal.
    kafka_topic_partitions: int = Field(default=6, ge=1)
    #: Replication factor of topics the services create (3 on a production cluster).
    kafka_replication_factor: int = Field(default=1, ge=1)
    #: Seconds the producer may take to get a record acknowledged (acks=all).
    kafka_produce_timeout_seconds: float = Field(default=5.0, gt=0)
    #: A consumer that stops heartbeating for this long loses its partitions to the group.
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    #: How often consumers heartbeat; a third of the session timeout or less.
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=100)

    #: SQLAlchemy URL of the service's own database: ``postgresql+asyncpg://...`` in prod.
    database_url: str = ""

    @field_validator("api_keys", "rate_limit_overrides", mode="before")
    @classmethod
    def _split_api_keys(cls, value: Any) -> Any:
        return comma_separated(value)

    @field_validator("rate_limit_overrides")
    @classmethod
    def _overrides_parse(cls, value: list[str]) -> list[str]:
        from shared.credentials.limits import parse_overrides  # the format's one definition

        parse_overrides(value)
        return value

    @model_validator(mode="after")
    def _defaults_and_prod_safety(self) -> ServiceSettings:
        if not self.database_url:
            self.database_url = local_sqlite_url(self.service_name)
        if self.env == "prod":
            self._refuse_unsafe_prod_config()
        return self

    def _refuse_unsafe_prod_config(self) -> None:
        problems: list[str] = []
        for name, field in type(self).model_fields.items():
            extra = field.json_schema_extra
            if not (isinstance(extra, dict) and extra.get("secret")):
                continue
            value = getattr(self, name)
            values = value if isinstance(value, list) else [value]
            plain = [v.get_secret_value() if isinstance(v, SecretStr) else str(v) for v in values]
            # An empty list is a choice (no unscoped VTR_API_KEYS once keys are issued); an
            # unset one still holds the development default and is refused.
            if (not plain and not isinstance(value, list)) or any(
                not v or v.startswith(DEV_SECRET_PREFIX) for v in plain
            ):
                problems.append(f"{ENV_PREFIX}{name.upper()} is missing or a development default")
        if self.database_url.startswith("sqlite"):
            problems.append(f"{ENV_PREFIX}DATABASE_URL points at SQLite; prod needs PostgreSQL")
        if problems:
            raise ValueError("refusing to start in prod: " + "; ".join(problems))

    def api_key_values(self) -> list[bytes]:
        return [key.get_secret_value().encode() for key in self.api_keys]
