"""Adapters that hand a composed message to SMTP or Slack, or to files for local runs.

Each sender either returns (delivered) or raises :class:`DeliveryError` saying whether
trying again can help and, for Slack's 429, when.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiohttp
import aiosmtplib
from slack_sdk.webhook.async_client import AsyncWebhookClient

from services.notifier.messages import EmailContent

log = logging.getLogger(__name__)

#: Slack answers these for a webhook that will never work (removed app, archived channel, bad payload).
SLACK_PERMANENT_STATUSES = frozenset({400, 403, 404, 410})


class DeliveryError(Exception):
    """A message was not delivered. ``permanent``: retrying cannot help."""

    def __init__(self, reason: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after = retry_after


class EmailSender(Protocol):
    async def send(self, recipient: str, content: EmailContent, message_id: str) -> None: ...


class SlackSender(Protocol):
    async def send(self, webhook_url: str, payload: dict[str, Any], message_id: str) -> None: ...


def build_email(sender: str, recipient: str, content: EmailContent, message_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = content.subject
    message["Date"] = formatdate(usegmt=True)
    # A stable Message-ID lets mail clients fold the rare duplicate (crash between send and mark).
    message["Message-ID"] = f"<{message_id}@vtrwatch>"
    message.set_content(content.text)
    message.add_alternative(content.html, subtype="html")
    return message


@dataclass(frozen=True)
class SmtpConfig:
    hostname: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        """``smtp://user:pass@host:587?starttls=true`` or ``smtps://user:pass@host:465``."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("VTR_SMTP_URL must look like smtp://user:pass@host:587?starttls=true")
        use_tls = parts.scheme == "smtps"
        query = {key: values[-1].lower() for key, values in parse_qs(parts.query).items()}
        return cls(
            hostname=parts.hostname,
            port=parts.port or (465 if use_tls else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=use_tls,
            start_tls=query.get("starttls", "false") in ("1", "true", "yes"),
        )


class SmtpEmailSender:
    def __init__(self, config: SmtpConfig, mail_from: str, timeout_seconds: float) -> None:
        self._config = config
        self._mail_from = mail_from
        self._timeout = timeout_seconds

    async def send(self, recipient: str, content: EmailContent, message_id: str) -> None:
        message = build_email(self._mail_from, recipient, content, message_id)
        config = self._config
        try:
            await aiosmtplib.send(
                message,
                hostname=config.hostname,
                port=config.port,
                username=config.username,
                password=config.password,
                use_tls=config.use_tls,
                start_tls=config.start_tls,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refused.code for refused in error.recipients]
            raise DeliveryError(
                f"recipient refused (SMTP {codes})", permanent=all(code >= 500 for code in codes)
            ) from error
        except aiosmtplib.SMTPResponseException as error:
            # A refused recipient is about this message; anything else (auth, sender,
            # server trouble) is about the server or its settings and may be fixed.
            permanent = isinstance(error, aiosmtplib.SMTPRecipientRefused) and error.code >= 500
            raise DeliveryError(f"SMTP {error.code}", permanent=permanent) from error
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise DeliveryError(f"SMTP unavailable: {type(error).__name__}", permanent=False) from error


class WebhookSlackSender:
    def __init__(self, timeout_seconds: float) -> None:
        self._timeout = timeout_seconds

    async def send(self, webhook_url: str, payload: dict[str, Any], message_id: str) -> None:
        client = AsyncWebhookClient(url=webhook_url, timeout=int(max(1, self._timeout)))
        try:
            response = await client.send_dict(payload)
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            # The exception text may contain the URL, which is a secret: report the type only.
            raise DeliveryError(f"Slack unreachable: {type(error).__name__}", permanent=False) from None
        if 200 <= response.status_code < 300:
            return
        body = (response.body or "")[:100]
        reason = f"Slack {response.status_code} {body}".strip()
        if response.status_code == 429:
            raise DeliveryError(reason, permanent=False, retry_after=_retry_after(response.headers))
        raise DeliveryError(reason, permanent=response.status_code in SLACK_PERMANENT_STATUSES)


def _retry_after(headers: Any) -> float | None:
    for key, value in dict(headers or {}).items():
        if str(key).lower() == "retry-after":
            try:
                return max(0.0, float(value[0] if isinstance(value, list) else value))
            except ValueError:
                return None
    return None


class FileEmailSender:
    """Local runs without SMTP: one ``.eml`` file per message."""

    def __init__(self, directory: Path, mail_from: str) -> None:
        self._directory = directory
        self._mail_from = mail_from

    async def send(self, recipient: str, content: EmailContent, message_id: str) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        path = self._directory / f"{message_id}.eml"
        path.write_bytes(bytes(build_email(self._mail_from, recipient, content, message_id)))
        log.info("e-mail written to file (no VTR_SMTP_URL set)", extra={"path": str(path), "subject": content.subject})


class FileSlackSender:
    """Local runs without SMTP: one Slack JSON file per message (the webhook URL is not written)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    async def send(self, webhook_url: str, payload: dict[str, Any], message_id: str) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        path = self._directory / f"{message_id}.slack.json"
        path.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        log.info("Slack message written to file (no VTR_SMTP_URL set)", extra={"path": str(path)})
