"""Settings of the ingest service (environment variables prefixed ``VTR_``)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from shared.settings import DEV_SECRET_PREFIX, ServiceSettings, comma_separated, secret_field
from shared.topics import LARGEST_BODY_BYTES

#: The 17TRACK key's variable starts with a digit after the prefix, which no Python name can.
SEVENTEEN_TRACK_ENV = "VTR_17TRACK_API_KEY"
_SEVENTEEN_TRACK_FIELD_ENV = "VTR_SEVENTEEN_TRACK_API_KEY"
_SQLITE_OBJECTION = "VTR_DATABASE_URL points at SQLite; prod needs PostgreSQL"
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{32}$")
_BASE64_KEY = re.compile(r"^[A-Za-z0-9+/]{22}==$")
_SM4_KEY_PROBLEM = (
    "VTR_CHINAPOST_SM4_KEY must be 16 bytes: 32 hex characters or 24 base64 characters (as EMS issues it)"
)
#: Secrets only needed by an alternative that is switched off (name -> the setting that uses it).
_OPTIONAL_SECRETS = {
    "VTR_YUNEXPRESS_TOKEN": "token-hmac",
    "VTR_YUNEXPRESS_AES_KEY": "encrypted",
    "VTR_AFTERSHIP_API_KEY": "aftership-registration",
    "VTR_LWA_CLIENT_SECRET": "amazon",
    "VTR_AMAZON_TOKEN_KEY": "amazon",
    "VTR_CONSOLE_SECRET": "amazon",
}
CommaList = Annotated[list[str], NoDecode]


def sm4_key_bytes(text: str) -> bytes:
    """The 16-byte SM4 key from 32 hex characters or 24 base64 characters."""
    if _HEX_KEY.match(text):
        return bytes.fromhex(text)
    if _BASE64_KEY.match(text):
        try:
            key = base64.b64decode(text, validate=True)
        except binascii.Error:
            key = b""
        if len(key) == 16:
            return key
    raise ValueError(_SM4_KEY_PROBLEM)


class IngestSettings(ServiceSettings):
    service_name: ClassVar[str] = "ingest"

    http_port: int = 8000

    chinapost_sm4_key: SecretStr = secret_field(
        default="dev-0123456789abcdeffedcba9876543210",
        description="China Post open-platform SM4 key (16 bytes): 24 base64 characters as EMS issues it, or 32 hex.",
    )
    chinapost_digest_key: SecretStr = secret_field(
        default="dev-chinapost-digest-key", description="Key of the China Post traces push data_digest."
    )
    yunexpress_secret: SecretStr = secret_field(
        default="dev-yunexpress-secret",
        description="YunExpress secret: signs pushes under either signing scheme.",
    )
    #: ``timestamp-sha256``: X-Openapi-Request-Timestamp + X-Openapi-Signature (hex SHA-256
    #: of timestamp + secret + body). ``token-hmac``: the newer scheme, headers ``token``,
    #: ``date`` and ``sign`` = base64 HMAC-SHA256 over body, date, method and path.
    yunexpress_signing: Literal["timestamp-sha256", "token-hmac"] = "timestamp-sha256"
    yunexpress_token: SecretStr = secret_field(
        default="dev-yunexpress-token",
        description="YunExpress token header value (only with VTR_YUNEXPRESS_SIGNING=token-hmac).",
    )
    #: Whether pushes come in the encrypted envelope ``{"encrypt": base64(AES-ECB)}``.
    yunexpress_encrypted: bool = False
    yunexpress_aes_key: SecretStr = secret_field(
        default="dev-0123456789abcdef",
        description="AES key of YunExpress's encrypted envelope, 16/24/32 characters (with VTR_YUNEXPRESS_ENCRYPTED).",
    )
    yanwen_token: SecretStr = secret_field(default="dev-yanwen-token", description="Yanwen customer token.")
    seventeen_track_api_key: SecretStr = Field(
        default=SecretStr("dev-17track-api-key"),
        validation_alias=AliasChoices(SEVENTEEN_TRACK_ENV, "seventeen_track_api_key"),
        description="17TRACK API key (signs webhook v2 pushes).",
        json_schema_extra={"secret": True},
    )
    aftership_secret: SecretStr = secret_field(default="dev-aftership-secret", description="AfterShip webhook secret.")

    # --- Registering numbers with the aggregators (python -m services.ingest registrar) ---
    #: Carrier slugs whose confirmed shipments are registered with 17TRACK (comma-separated).
    register_17track_carriers: CommaList = Field(default_factory=list)
    #: Seller ids whose confirmed shipments are registered with 17TRACK, whatever the carrier.
    register_17track_sellers: CommaList = Field(default_factory=list)
    register_aftership_carriers: CommaList = Field(default_factory=list)
    register_aftership_sellers: CommaList = Field(default_factory=list)
    #: 17TRACK API v2.2 base URL (register call: ``/register``, 40 numbers a call).
    seventeen_track_api_url: str = "https://api.17track.net/track/v2.2"
    #: AfterShip Tracking API base URL (``/trackings`` creates a tracking).
    aftership_api_url: str = "https://api.aftership.com/tracking/2024-04"
    aftership_api_key: SecretStr = secret_field(
        default="dev-aftership-api-key",
        description="AfterShip API key (as-api-key), only to register numbers (VTR_REGISTER_AFTERSHIP_*).",
    )
    #: Registration calls per second, per aggregator (17TRACK allows 3, AfterShip 10).
    register_17track_rate_per_second: float = Field(default=3.0, gt=0)
    register_aftership_rate_per_second: float = Field(default=10.0, gt=0)
    #: Attempts of a registration call that fails with 429, 5xx or a network error.
    registration_max_attempts: int = Field(default=6, ge=1)
    #: First back-off between attempts, doubled each time up to the maximum.
    registration_backoff_seconds: float = Field(default=2.0, ge=0)
    registration_backoff_max_seconds: float = Field(default=300.0, ge=0)
    registration_timeout_seconds: float = Field(default=10.0, gt=0)

    # --- Polling Yanwen (python -m services.ingest poll-yanwen; uses VTR_YANWEN_TOKEN) ---
    #: Yanwen's tracking query (``?nums=`` up to 30 numbers, header Authorization).
    yanwen_api_url: str = "https://api.track.yw56.com.cn/api/tracking"
    #: Seconds between two rounds over the open Yanwen parcels.
    yanwen_poll_interval_seconds: float = Field(default=3600.0, gt=0)
    #: Tracking queries per second (Yanwen publishes no figure; keep it low).
    yanwen_poll_rate_per_second: float = Field(default=1.0, gt=0)

    # --- Amazon SP-API (docs/amazon.md; python -m services.ingest amazon worker) ---
    #: The app's Login with Amazon client id (Solution Provider Portal); empty = Amazon not set up.
    lwa_client_id: str = ""
    lwa_client_secret: SecretStr = secret_field(
        default="dev-lwa-client-secret", description="The app's Login with Amazon client secret."
    )
    #: The SP-API application id sent to Seller Central's consent page (``amzn1.sp.solution...``).
    spapi_application_id: str = ""
    #: Login with Amazon's token endpoint (code exchange and refresh).
    lwa_token_url: str = "https://api.amazon.com/auth/o2/token"  # noqa: S105 - a URL
    #: SP-API endpoint per region; the sandbox is ``https://sandbox.sellingpartnerapi-na.amazon.com`` etc.
    spapi_endpoint_na: str = "https://sellingpartnerapi-na.amazon.com"
    spapi_endpoint_eu: str = "https://sellingpartnerapi-eu.amazon.com"
    spapi_endpoint_fe: str = "https://sellingpartnerapi-fe.amazon.com"
    #: Seller Central's consent page per region; a query such as ``?version=beta`` (a draft app) is kept.
    seller_central_consent_url_na: str = "https://sellercentral.amazon.com/apps/authorize/consent"
    seller_central_consent_url_eu: str = "https://sellercentral-europe.amazon.com/apps/authorize/consent"
    seller_central_consent_url_fe: str = "https://sellercentral.amazon.co.jp/apps/authorize/consent"
    amazon_token_key: SecretStr = secret_field(
        default="dev-local:" + "ZGV2LW9ubHktYW1hem9uLXRva2VuLWtleS0zMmJ5dGU=",
        description=(
            "Keys that encrypt the sellers' refresh tokens at rest: comma-separated KEY_ID:BASE64 (32 bytes);"
            " the first encrypts, all decrypt (rotation)."
        ),
    )
    console_secret: SecretStr = secret_field(
        default="dev-console-secret",
        description=(
            "Key of the HMAC that signs console links (the scorer's and notifier's VTR_CONSOLE_SECRET, same value):"
            " a seller's signed link opens GET /v1/amazon/authorize for that seller."
        ),
    )
    #: Seconds between two searchOrders rounds per connected seller (usage plan: 0.0056/s, burst 20).
    amazon_orders_poll_seconds: float = Field(default=900.0, gt=0)
    #: Seconds between two performance reports per connected seller (one right after connecting).
    amazon_report_poll_seconds: float = Field(default=86400.0, gt=0)
    #: Connected sellers (and regions) the Amazon worker serves at once; each still waits for
    #: its own usage plans, which Amazon sets per seller and app, so one seller's wait (a
    #: searchOrders call every 3 minutes once its burst is spent) does not hold up the others.
    amazon_concurrent_sellers: int = Field(default=8, ge=1, le=256)

    # --- The workers' metrics and health endpoint (registrar, Yanwen poller) ---
    #: Port of the workers' small HTTP server: /metrics, /healthz, /readyz (on VTR_HTTP_HOST).
    worker_metrics_port: int = Field(default=9102, ge=1, le=65535)
    #: A worker whose loop has not ticked (polled Kafka, tried a vendor call, ended a
    #: back-off) for this long answers /healthz with 503, and the kubelet restarts it. It
    #: must exceed the longest wait of a healthy worker: one back-off plus one call timeout.
    worker_stall_seconds: float = Field(default=600.0, gt=0)

    #: Larger bodies get 413 before they are read in full.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: YunExpress pushes whose timestamp is further than this from now are refused.
    yunexpress_timestamp_window_seconds: float = Field(default=300.0, gt=0)
    #: Seconds a request waits for the broker to acknowledge (acks=all) before answering 503.
    produce_deadline_seconds: float = Field(default=5.0, gt=0)
    #: The ``Retry-After`` sent with a 503.
    retry_after_seconds: int = Field(default=5, ge=1)
    #: How many recently produced event ids to remember, so re-sent history is not
    #: produced again (0 = produce every event of every push).
    recent_event_ids: int = Field(default=200_000, ge=0)
    #: Most shipment records accepted in one request.
    max_shipments_per_request: int = Field(default=10_000, ge=1)
    #: Shipment batches are bigger than carrier pushes: 10,000 records need several MiB.
    max_shipments_body_bytes: int = Field(default=LARGEST_BODY_BYTES, ge=1024)

    @field_validator("chinapost_sm4_key")
    @classmethod
    def _sm4_key_is_16_bytes(cls, value: SecretStr) -> SecretStr:
        sm4_key_bytes(value.get_secret_value().strip().removeprefix(DEV_SECRET_PREFIX))
        return value

    @field_validator(
        "register_17track_carriers",
        "register_17track_sellers",
        "register_aftership_carriers",
        "register_aftership_sellers",
        mode="before",
    )
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        return comma_separated(value)

    @field_validator("amazon_token_key")
    @classmethod
    def _token_keys_readable(cls, value: SecretStr) -> SecretStr:
        from services.ingest.amazon.sealing import TokenKeys

        TokenKeys.parse(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _aes_key_length(self) -> IngestSettings:
        # Only checked when the encrypted envelope is on: the key is unused otherwise.
        if self.yunexpress_encrypted and len(self.yunexpress_aes_key_bytes()) not in (16, 24, 32):
            raise ValueError("VTR_YUNEXPRESS_AES_KEY must be 16, 24 or 32 characters")
        return self

    @model_validator(mode="after")
    def _stall_outlasts_the_longest_wait(self) -> IngestSettings:
        # A healthy worker may sleep one full back-off and then wait one full call timeout
        # without ticking; a shorter stall limit would have it restarted in a loop.
        longest_wait = self.registration_backoff_max_seconds + self.registration_timeout_seconds
        if self.worker_stall_seconds <= longest_wait:
            raise ValueError(
                "VTR_WORKER_STALL_SECONDS must exceed VTR_REGISTRATION_BACKOFF_MAX_SECONDS"
                f" + VTR_REGISTRATION_TIMEOUT_SECONDS ({longest_wait:g} s)"
            )
        return self

    def spapi_endpoint(self, region: str) -> str:
        return {"na": self.spapi_endpoint_na, "eu": self.spapi_endpoint_eu, "fe": self.spapi_endpoint_fe}[region]

    def seller_central_consent_url(self, region: str) -> str:
        return {
            "na": self.seller_central_consent_url_na,
            "eu": self.seller_central_consent_url_eu,
            "fe": self.seller_central_consent_url_fe,
        }[region]

    def largest_body_bytes(self) -> int:
        """The largest body any endpoint accepts; the dead-letter topic must hold it."""
        return max(self.max_body_bytes, self.max_shipments_body_bytes)

    def chinapost_sm4_key_hex(self) -> str:
        """The SM4 key as 32 hex characters, whichever way it was configured."""
        # The dev default carries the "dev-" marker so prod refuses it; the key is the rest.
        return sm4_key_bytes(self.chinapost_sm4_key.get_secret_value().strip().removeprefix(DEV_SECRET_PREFIX)).hex()

    def yunexpress_aes_key_bytes(self) -> bytes:
        return self.yunexpress_aes_key.get_secret_value().removeprefix(DEV_SECRET_PREFIX).encode()

    def _refuse_unsafe_prod_config(self) -> None:
        try:
            super()._refuse_unsafe_prod_config()
        except ValueError as error:
            heading, _, listed = str(error).partition(": ")
            # The ingest keeps no database, so the base class's SQLite objection does not apply.
            listed = listed.replace(_SQLITE_OBJECTION, "").replace(_SEVENTEEN_TRACK_FIELD_ENV, SEVENTEEN_TRACK_ENV)
            in_use = {
                "token-hmac": self.yunexpress_signing == "token-hmac",
                "encrypted": self.yunexpress_encrypted,
                "aftership-registration": bool(self.register_aftership_carriers or self.register_aftership_sellers),
                "amazon": bool(self.lwa_client_id),
            }
            unused = [name for name, alternative in _OPTIONAL_SECRETS.items() if not in_use[alternative]]
            problems = [
                problem
                for problem in listed.split("; ")
                if problem.strip() and not any(problem.startswith(f"{name} ") for name in unused)
            ]
            if problems:
                raise ValueError(f"{heading}: " + "; ".join(problems)) from None
