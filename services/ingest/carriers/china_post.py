"""China Post: the EMS open-platform push (SM4-encrypted traces) and the older traces push."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import msgspec
import orjson

from services.ingest import signatures
from services.ingest.carriers.common import Code, decode, joined, make_event, moment, text, tracking_number
from services.ingest.carriers.source import (
    FORM,
    JSON,
    Carrier,
    Unauthenticated,
    Verified,
    WebhookSource,
    header_or_query,
)
from shared.schemas import TrackingEvent
from shared.status_codes import MAPPINGS

if TYPE_CHECKING:
    from starlette.requests import Request

    from services.ingest.settings import IngestSettings


SOURCE = "china-post"
CARRIER = "china-post"
MAPPING = MAPPINGS[SOURCE]

SUCCESS_CODE = "00000"
#: Tells China Post the push failed and should be sent again.
RETRY_CODE = "S00001"


class Trace(msgspec.Struct):
    opTime: str
    opCode: Code
    waybillNo: str | None = None
    traceNo: str | None = None
    opName: Any = None
    opDesc: Any = None
    opOrgName: Any = None
    opOrgProvName: Any = None
    opOrgCity: Any = None


class TracesPush(msgspec.Struct):
    traces: list[Trace]


_EMS_PAYLOAD = msgspec.json.Decoder(Trace | list[Trace])
_TRACES_PUSH = msgspec.json.Decoder(TracesPush)


@dataclass(frozen=True, slots=True)
class EmsEnvelope:
    """The clear-text fields around the encrypted traces; serialNo and senderNo are echoed."""

    encrypted: str
    serial_no: str
    sender_no: str


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else str(value) if isinstance(value, int | float) else ""


def parse_envelope(raw_body: bytes, content_type: str) -> EmsEnvelope | None:
    """The EMS push's envelope, JSON or form-encoded; None when the body is neither
    (such a push cannot be authenticated)."""
    fields: dict[str, Any]
    if "json" in content_type or raw_body.lstrip()[:1] == b"{":
        try:
            loaded = orjson.loads(raw_body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(loaded, dict):
            return None
        fields = loaded
    else:
        try:
            form = parse_qs(raw_body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            return None
        fields = {name: values[0] for name, values in form.items()}
    encrypted = fields.get("logitcsInterface")
    if not isinstance(encrypted, str) or not encrypted:
        return None
    # Form bodies are sometimes sent with the base64 '+' unescaped, which decodes as ' '.
    encrypted = encrypted.replace(" ", "+")
    return EmsEnvelope(encrypted, _scalar(fields.get("serialNo")), _scalar(fields.get("senderNo")))


def _events(traces: list[Trace], received_at: datetime, field: str) -> list[TrackingEvent]:
    events = []
    for index, trace in enumerate(traces):
        where = f"{field}[{index}]"
        code = str(trace.opCode).strip()
        if code in MAPPING.metadata_only:
            continue
        number = tracking_number(trace.waybillNo or trace.traceNo, f"{where}.waybillNo")
        events.append(
            make_event(
                MAPPING,
                carrier=CARRIER,
                number=number,
                code=code,
                occurred_at=moment(trace.opTime, MAPPING.timezone, f"{where}.opTime"),
                received_at=received_at,
                description=text(trace.opDesc) or text(trace.opName),
                location=text(trace.opOrgName) or joined(trace.opOrgProvName, trace.opOrgCity),
            )
        )
    return events


def parse_ems_payload(decrypted: bytes, received_at: datetime) -> list[TrackingEvent]:
    """The decrypted ``logitcsInterface``: one trace or a list of traces."""
    payload = decode(_EMS_PAYLOAD, decrypted)
    traces = payload if isinstance(payload, list) else [payload]
    return _events(traces, received_at, "$.logitcsInterface")


def parse_traces_push(raw_body: bytes, received_at: datetime) -> list[TrackingEvent]:
    """The older ``{"traces": [...]}`` push."""
    return _events(decode(_TRACES_PUSH, raw_body).traces, received_at, "$.traces")


def ack(envelope: EmsEnvelope | None, *, success: bool, message: str = "") -> dict[str, str]:
    return {
        "serialNo": envelope.serial_no if envelope else "",
        "code": SUCCESS_CODE if success else RETRY_CODE,
        "codeMessage": message,
        "senderNo": envelope.sender_no if envelope else "",
    }


# --- The webhook ---------------------------------------------------------------------------


class ChinaPostEmsPush(msgspec.Struct):
    """EMS open-platform push (method 040002); also accepted form-encoded."""

    logitcsInterface: str
    method: str | None = None
    msgType: str | None = None
    senderNo: str | None = None
    serialNo: str | None = None
    timeStamp: str | None = None
    version: str | None = None


def webhook_source(settings: IngestSettings) -> WebhookSource:
    sm4_key = settings.chinapost_sm4_key_hex()
    digest_key = settings.chinapost_digest_key.get_secret_value()

    def verify(request: Request, raw_body: bytes) -> Verified:
        digest = header_or_query(request, signatures.CHINAPOST_DIGEST_PARAMETER)
        if digest is not None:
            expected = signatures.chinapost_data_digest(raw_body, digest_key)
            if not signatures.signatures_match(digest, expected):
                raise Unauthenticated("data_digest does not match")
            return raw_body, None
        envelope = parse_envelope(raw_body, request.headers.get("content-type", ""))
        if envelope is None:
            raise Unauthenticated("neither a data_digest nor an encrypted logitcsInterface")
        try:
            return signatures.chinapost_sm4_decrypt(envelope.encrypted, sm4_key), envelope
        except signatures.SignatureError as error:
            raise Unauthenticated(str(error), envelope) from None

    def reopen(raw_body: bytes, content_type: str) -> Verified:
        envelope = parse_envelope(raw_body, content_type)
        if envelope is None:
            return raw_body, None
        return signatures.chinapost_sm4_decrypt(envelope.encrypted, sm4_key), envelope

    def parse(payload: bytes, received_at: datetime, envelope: EmsEnvelope | None) -> list[TrackingEvent]:
        if envelope is None:
            return parse_traces_push(payload, received_at)
        return parse_ems_payload(payload, received_at)

    return WebhookSource(
        source=SOURCE,
        verify=verify,
        parse=parse,
        ack=lambda envelope, _count: ack(envelope, success=True),
        failure=lambda envelope, detail: {**ack(envelope, success=False, message=detail), "detail": detail},
        reopen=reopen,
    )


WEBHOOK = Carrier(
    SOURCE,
    "China Post: EMS open-platform push (SM4) or traces push (data_digest)",
    {JSON: (ChinaPostEmsPush, TracesPush), FORM: (ChinaPostEmsPush,)},
    webhook_source,
)
