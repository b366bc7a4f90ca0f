"""Adapters that hand a composed message to SMTP or Slack, or to files for local runs.

Each sender either returns (delivered) or raises :class:`DeliveryError` saying whether
trying again can help and, for Slack's 429, when.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import socket
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiohttp
import aiohttp.abc
import aiosmtplib

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

    async def close(self) -> None:
        """Release what the sender holds (its HTTP session); called once at shutdown."""
        ...


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
    password: str | None = field(repr=False)
    use_tls: bool
    start_tls: bool

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        """``smtp://user:pass@host:587?starttls=true`` or ``smtps://user:pass@host:465``."""
        shape = "VTR_SMTP_URL must look like smtp://user:pass@host:587?starttls=true (percent-encode the password)"
        try:
            # urlsplit's own errors quote the URL's parts (the password among them): never shown.
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ValueError(shape) from None
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(shape)
        use_tls = parts.scheme == "smtps"
        query = {key: values[-1].lower() for key, values in parse_qs(parts.query).items()}
        return cls(
            hostname=parts.hostname,
            port=port or (465 if use_tls else 25),
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


def address_problem(address: str) -> str | None:
    """Why a Slack webhook may not be posted to this IP address, or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in _METADATA_NETWORKS if network.version == ip.version):
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private or ip.is_reserved or ip.is_multicast or ip.is_unspecified or not ip.is_global:
        return "a private or reserved address"
    return None


#: Metadata services of the clouds (the IPv4 one is link-local anyway; AWS' IPv6 one is not).
_METADATA_NETWORKS = (ipaddress.ip_network("169.254.169.254/32"), ipaddress.ip_network("fd00:ec2::254/128"))


class RefusedAddress(OSError):
    """The webhook's host resolves (now, at connect time) to an address we never post to."""


class _GuardedResolver(aiohttp.abc.AbstractResolver):
    """Resolves like aiohttp does, then drops every address the sender may not reach:
    the check happens on the addresses the connection will actually use, whatever the
    name resolved to when the subscription was saved (DNS rebinding)."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[Any]:
        resolved = await self._inner.resolve(host, port, family)
        if self._allow_private:
            return list(resolved)
        allowed = [entry for entry in resolved if address_problem(entry["host"]) is None]
        if not allowed:
            problem = address_problem(resolved[0]["host"]) if resolved else "no address"
            raise RefusedAddress(f"the webhook host resolves to {problem}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class WebhookSlackSender:
    """Posts Block Kit payloads to Slack incoming webhooks.

    SSRF guard (issue 14): redirects are never followed (Slack does not redirect webhook
    posts; a 3xx is a permanent failure), and the address is checked when connecting: no
    loopback, link-local, private, reserved or metadata address, whether the URL names it
    literally or a name resolves to it by then. ``allow_private_addresses`` lifts the
    address check for tests and local stand-ins only; production refuses it."""

    def __init__(self, timeout_seconds: float, *, allow_private_addresses: bool = False) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._allow_private = allow_private_addresses
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=_GuardedResolver(self._allow_private), use_dns_cache=False)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, trust_env=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, webhook_url: str, payload: dict[str, Any], message_id: str) -> None:
        host = urlsplit(webhook_url).hostname or ""
        with contextlib.suppress(ValueError):  # a literal IP skips the resolver: check it here
            if not self._allow_private and (problem := address_problem(host)) is not None:
                raise DeliveryError(f"Slack webhook refused: the host is {problem}", permanent=True)
        try:
            async with self._client().post(
                webhook_url, data=json.dumps(payload), headers=_SLACK_HEADERS, allow_redirects=False
            ) as response:
                status = response.status
                body = (await response.text(errors="replace"))[:100]
                headers = response.headers
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            # aiohttp wraps the resolver's refusal in its own connector error.
            refused = next(
                (
                    e
                    for e in (error, getattr(error, "os_error", None), error.__cause__)
                    if isinstance(e, RefusedAddress)
                ),
                None,
            )
            if refused is not None:
                raise DeliveryError(f"Slack webhook refused: {refused}", permanent=True) from None
            # The exception text may contain the URL, which is a secret: report the type only.
            raise DeliveryError(f"Slack unreachable: {type(error).__name__}", permanent=False) from None
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            # Never followed: the target could be any host (the URL is not logged: a secret).
            raise DeliveryError(f"Slack {status}: redirect refused", permanent=True)
        reason = f"Slack {status} {body}".strip()
        if status == 429:
            raise DeliveryError(reason, permanent=False, retry_after=_retry_after(headers))
        raise DeliveryError(reason, permanent=status in SLACK_PERMANENT_STATUSES)


_SLACK_HEADERS = {"Content-Type": "application/json;charset=utf-8"}


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

    async def close(self) -> None:
        """Nothing to release: every message is its own file."""
