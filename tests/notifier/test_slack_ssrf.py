"""Issue 14, section 3: the Slack sender follows no redirect and posts to no loopback,
link-local, private or metadata address, whatever the URL names or a name resolves to.
Real HTTP servers on 127.0.0.1 play the allowed host (which redirects) and the target."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from services.notifier.delivery import DeliveryError, WebhookSlackSender, address_problem
from services.notifier.settings import NotifierSettings
from tools.localstack import free_port

PAYLOAD = {"text": "VTR alert", "blocks": []}


@dataclass
class Servers:
    redirector: str
    target: str
    target_hits: list[str] = field(default_factory=list)


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    hits: list[str] = []
    target_port, redirect_port = free_port(), free_port()

    async def target(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="ok")

    async def redirect(request: web.Request) -> web.Response:
        status = int(request.match_info["status"])
        return _redirect(status, f"http://127.0.0.1:{target_port}/latest/meta-data/")

    runners = []
    for port, routes in (
        (target_port, [web.route("*", "/{tail:.*}", target)]),
        (redirect_port, [web.post("/services/{status}/hook", redirect)]),
    ):
        app = web.Application()
        app.add_routes(routes)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
    yield Servers(f"http://127.0.0.1:{redirect_port}", f"http://127.0.0.1:{target_port}", hits)
    for runner in runners:
        await runner.cleanup()


def _redirect(status: int, location: str) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_refused_and_never_followed(status: int, servers: Servers) -> None:
    # The stand-in for hooks.slack.com is on loopback, so the address check is lifted
    # here (as in every test with a local Slack stand-in): this checks the redirect alone.
    sender = WebhookSlackSender(5, allow_private_addresses=True)
    try:
        with pytest.raises(DeliveryError) as refused:
            await sender.send(f"{servers.redirector}/services/{status}/hook", PAYLOAD, "m-1")
    finally:
        await sender.close()
    assert refused.value.permanent
    assert f"Slack {status}" in refused.value.reason and "redirect" in refused.value.reason
    assert servers.target_hits == []


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "[::1]", "169.254.169.254", "10.0.0.8", "192.168.1.1", "[::ffff:127.0.0.1]", "0.0.0.0"],  # noqa: S104
)
async def test_loopback_private_and_metadata_addresses_are_refused_at_connect_time(host: str, servers: Servers) -> None:
    port = servers.target.rsplit(":", 1)[1]
    sender = WebhookSlackSender(2)
    try:
        with pytest.raises(DeliveryError) as refused:
            await sender.send(f"http://{host}:{port}/services/T/B/x", PAYLOAD, "m-2")
    finally:
        await sender.close()
    assert refused.value.permanent, refused.value.reason
    assert "refused" in refused.value.reason
    assert servers.target_hits == []


async def test_the_same_server_is_reached_when_the_test_allowance_is_on(servers: Servers) -> None:
    # The control: without it, the test above could pass for a server that is simply down.
    sender = WebhookSlackSender(5, allow_private_addresses=True)
    try:
        await sender.send(f"{servers.target}/services/T/B/x", PAYLOAD, "m-3")
    finally:
        await sender.close()
    assert servers.target_hits == ["/services/T/B/x"]


def test_public_addresses_pass_the_check() -> None:
    assert address_problem("52.89.214.238") is None
    assert address_problem("2600:1f14::1") is None
    assert address_problem("fd00:ec2::254") == "a cloud metadata address"


def test_the_allowance_is_refused_in_prod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VTR_ENV", "prod")
    monkeypatch.setenv("VTR_API_KEYS", "k-" + "x" * 20)
    monkeypatch.setenv("VTR_SCORER_API_KEY", "s-" + "x" * 20)
    monkeypatch.setenv("VTR_SMTP_URL", "smtp://mail.example.com:25")
    monkeypatch.setenv("VTR_DATABASE_URL", "postgresql+asyncpg://vtr@db/vtr")
    monkeypatch.setenv("VTR_CONSOLE_SECRET", "c-" + "x" * 30)
    NotifierSettings()
    monkeypatch.setenv("VTR_SLACK_ALLOW_PRIVATE_ADDRESSES", "true")
    with pytest.raises(ValueError, match="VTR_SLACK_ALLOW_PRIVATE_ADDRESSES"):
        NotifierSettings()
