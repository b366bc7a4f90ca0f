"""``make demo``: watch a seller's category slide towards 95% and get warned before the floor.

Uses the services of ``make run`` when they answer on 8000/8001/8002; otherwise starts its
own stack (Tansu + the three services as ``python -m services.<name>``, fresh SQLite files
under ``.vtr/demo/``) and stops it at the end. Then it subscribes the demo sellers to the
notifier, replays 45 simulated days of orders and carrier pushes (seeded, see
``tools/simulate``), shows a live table of each seller x category as the scorer saw it on
each simulated day, and waits for the notifier's e-mail and Slack files in ``.vtr/outbox/``.

    python -m tools.demo [--seed 7] [--day-seconds 1] [--wait 240] [--keep-running]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tools.console_link import console_links
from tools.localstack import TansuBroker
from tools.simulate.driver import Driver, ScorerClient
from tools.simulate.plan import Step, replay_plan
from tools.simulate.presets import DRIFTING_SELLER, SURFACE_SELLER, demo_config
from tools.simulate.scenario import Scenario, ScenarioConfig, Seller, generate
from tools.simulate.stack import ROOT, ServiceProcess
from tools.simulate.truth import FLOOR, Tally, true_breach_day, vtr_by_key
from tools.simulate.webhooks import WebhookSecrets

DEFAULT_URLS = {
    "ingest": "http://127.0.0.1:8000",
    "scorer": "http://127.0.0.1:8001",
    "notifier": "http://127.0.0.1:8002",
}
OUTBOX = ROOT / ".vtr" / "outbox"
#: A console link in a written message (Slack JSON keeps it verbatim).
CONSOLE_LINK = re.compile(r"https?://[^\s\"'<>]+/console/[^\s\"'<>]+")
LEVEL_STYLE = {"OK": "green", "WATCH": "yellow", "AT_RISK": "bold dark_orange", "BREACH": "bold red"}
#: Who gets a message in which language (the notifier renders both).
LANGUAGES = {DRIFTING_SELLER: "zh-CN", SURFACE_SELLER: "en"}


@dataclass
class Stack:
    urls: dict[str, str]
    started: list[ServiceProcess] = field(default_factory=list)
    broker: TansuBroker | None = None

    def stop(self) -> None:
        for service in reversed(self.started):
            service.stop()
        if self.broker is not None:
            self.broker.stop()


def running_stack() -> dict[str, str] | None:
    """The URLs of `make run`'s services when all three are ready."""
    for url in DEFAULT_URLS.values():
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code != 200:
                return None
        except httpx.HTTPError:
            return None
    return dict(DEFAULT_URLS)


def start_stack(console: Console) -> Stack:
    state = ROOT / ".vtr" / "demo" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    state.mkdir(parents=True, exist_ok=True)
    console.print(f"starting a broker and the three services (state in {state.relative_to(ROOT)}/) ...")
    broker = TansuBroker(log_path=state / "tansu.log").start()
    stack = Stack(urls={}, broker=broker)
    try:
        env = {"VTR_KAFKA_BOOTSTRAP": broker.bootstrap, "VTR_LOG_LEVEL": "WARNING"}
        ingest = ServiceProcess("ingest", env, state / "ingest.log").start()
        stack.started.append(ingest)
        scorer_env = {**env, "VTR_DATABASE_URL": f"sqlite+aiosqlite:///{state / 'scorer.db'}"}
        scorer = ServiceProcess("scorer", scorer_env, state / "scorer.log")
        notifier_env = {
            **env,
            "VTR_DATABASE_URL": f"sqlite+aiosqlite:///{state / 'notifier.db'}",
            "VTR_SCORER_URL": scorer.url,
            "VTR_OUTBOX_DIR": str(OUTBOX),
        }
        notifier = ServiceProcess("notifier", notifier_env, state / "notifier.log")
        # The console's notifications page asks the notifier.
        scorer.env["VTR_NOTIFIER_URL"] = notifier.url
        stack.started.append(scorer.start())
        stack.started.append(notifier.start())
    except BaseException:
        stack.stop()
        raise
    stack.urls = {"ingest": ingest.url, "scorer": scorer.url, "notifier": notifier.url}
    return stack


def tagged(config: ScenarioConfig, tag: str) -> ScenarioConfig:
    """Seller ids with a run tag, so a replay into a long-running stack does not mix with earlier ones."""
    if not tag:
        return config
    rename = {seller.seller_id: f"{seller.seller_id}-{tag}" for seller in config.sellers}
    sellers = tuple(Seller(rename[s.seller_id], s.lanes, s.role) for s in config.sellers)
    stops = tuple(type(stop)(rename[stop.seller_id], stop.service_key, stop.from_day) for stop in config.stops)
    return ScenarioConfig(**{**config.__dict__, "sellers": sellers, "stops": stops})


async def subscribe(notifier_url: str, api_key: str, scenario: Scenario) -> None:
    async with httpx.AsyncClient(base_url=notifier_url, headers={"authorization": f"Bearer {api_key}"}) as client:
        for seller in scenario.config.sellers:
            base = seller.seller_id.split("-")[0]
            response = await client.put(
                f"/v1/sellers/{seller.seller_id}/subscription",
                json={
                    "emails": [f"ops@{base.lower()}.example.com"],
                    "slack_webhook_url": f"https://hooks.slack.com/services/T0DEMO/B0DEMO/{base}",
                    "language": LANGUAGES.get(base, "en"),
                    "min_level": "AT_RISK",
                },
            )
            response.raise_for_status()


@dataclass
class View:
    """What the live table shows: the scorer's answer per seller-category for one as_of."""

    scenario: Scenario
    known_at: datetime
    as_of: date
    rows: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    status: str = ""
    notes: list[str] = field(default_factory=list)
    _breaches: dict[date, dict[tuple[str, str, str], date]] = field(default_factory=dict)

    def true_breaches(self) -> dict[tuple[str, str, str], date]:
        """First day from ``as_of`` on (14 days) whose true VTR, knowing the future, is below 95%."""
        if self.as_of not in self._breaches:
            found: dict[tuple[str, str, str], date] = {}
            for offset in range(15):
                day = self.as_of + timedelta(days=offset)
                for key, tally in vtr_by_key(self.scenario, day).items():
                    if key not in found and tally.vtr is not None and tally.vtr < FLOOR:
                        found[key] = day
            self._breaches = {self.as_of: found}
        return self._breaches[self.as_of]

    def render(self) -> Group:
        """One block per seller, so the table reads at 80 columns (seller ids and
        categories in full, headers over two lines)."""
        truth = vtr_by_key(self.scenario, self.as_of, self.known_at)
        breaches = self.true_breaches()
        blocks: list[Any] = [Text(f"vtrwatch as the scorer saw it on {self.as_of} (today is {self.scenario.today})")]
        for seller in self.scenario.config.sellers:
            table = Table(
                title=f"{seller.seller_id} ({self.scenario.role_of(seller.seller_id)})",
                title_justify="left",
                box=box.SIMPLE_HEAD,
                # One space between columns (the box's separator), none inside: 80 columns suffice.
                padding=(0, 0),
                pad_edge=False,
                show_edge=False,
            )
            for column, justify in DEMO_COLUMNS:
                table.add_column(column, justify=justify)  # type: ignore[arg-type]
            for key in self.scenario.seller_categories():
                row = self.rows.get(key)
                if key[0] != seller.seller_id or (row is None and key not in truth):
                    continue
                tally = truth.get(key, Tally())
                _, marketplace, category = key
                forecast = [point["vtr"] for point in (row or {}).get("forecast", []) if point["vtr"] is not None]
                level = (row or {}).get("level", "")
                days = (row or {}).get("days_to_breach")
                table.add_row(
                    f"{marketplace} {category}",
                    f"{row['valid']}/{row['total']}" if row else "-",
                    _percent(row.get("vtr") if row else None),
                    _percent(tally.vtr),
                    _percent(min(forecast) if forecast else None),
                    "-" if days is None else f"{days} d",
                    Text(level, style=LEVEL_STYLE.get(level, "")),
                    f"{(breaches[key] - self.as_of).days} d" if key in breaches else "-",
                )
            if table.row_count:
                blocks.append(table)
        return Group(*blocks, Text(self.status, style="dim"), *(Text(note) for note in self.notes[-8:]))


#: The columns of each seller's block: (header, justification); two-line headers keep it narrow.
DEMO_COLUMNS = (
    ("marketplace\ncategory", "left"),
    ("valid/\ntotal", "right"),
    ("VTR", "right"),
    ("true\nVTR", "right"),
    ("min\nforecast", "right"),
    ("breach\nin", "right"),
    ("level", "left"),
    ("truly\n< 95% in", "right"),
)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


async def refresh(view: View, scorer: ScorerClient) -> None:
    for seller in view.scenario.config.sellers:
        with contextlib.suppress(httpx.HTTPError):
            answer = await scorer.vtr(seller.seller_id, view.as_of)
            for category in (answer or {}).get("categories", []):
                view.rows[(seller.seller_id, category["marketplace"], category["category"])] = category


async def notifications(notifier_url: str, api_key: str, seller_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=notifier_url, headers={"authorization": f"Bearer {api_key}"}) as client:
        response = await client.get(f"/v1/sellers/{seller_id}/notifications")
        if response.status_code != 200:
            return []
        found: list[dict[str, Any]] = response.json()
        return found


def outbox_files(since: float) -> list[Path]:
    if not OUTBOX.is_dir():
        return []
    return sorted(path for path in OUTBOX.iterdir() if path.is_file() and path.stat().st_mtime >= since)


async def play(args: argparse.Namespace, urls: dict[str, str], console: Console, tag: str) -> int:
    started_at = time.time()
    known_at = datetime.now(UTC).replace(microsecond=0)
    scenario = generate(tagged(demo_config(), tag), args.seed, known_at.date())
    drifting = next(s.seller_id for s in scenario.config.sellers if s.role == "drifting")
    surface = next(s.seller_id for s in scenario.config.sellers if s.role == "surface")
    await subscribe(urls["notifier"], args.api_key, scenario)
    console.print(f"subscribed {len(scenario.config.sellers)} sellers to the notifier (min level AT_RISK)")
    steps = replay_plan(scenario, known_at)
    view = View(scenario, known_at, scenario.start)
    scorer = ScorerClient(urls["scorer"], args.api_key)
    secrets = WebhookSecrets.from_ingest_settings()
    try:
        with Live(view.render(), console=console, refresh_per_second=4, screen=False) as live:
            async with Driver(urls["ingest"], args.api_key, secrets, concurrency=16) as driver:

                async def after(step: Step) -> None:
                    view.as_of = step.day
                    await refresh(view, scorer)
                    view.status = f"simulated day {step.day}: {driver.stats.summary()}"
                    live.update(view.render())

                await driver.replay(steps, day_seconds=args.day_seconds, after_step=after)
            view.notes.append(
                f"replay done; waiting up to {args.wait:.0f}s for the notifier (it debounces escalations)"
            )
            deadline = time.monotonic() + args.wait
            alerted: set[str] = set()
            while time.monotonic() < deadline:
                view.as_of = scenario.today
                await refresh(view, scorer)
                for seller_id in (drifting, surface):
                    sent = [
                        n
                        for n in await notifications(urls["notifier"], args.api_key, seller_id)
                        if n["status"] == "sent"
                    ]
                    if sent and seller_id not in alerted:
                        alerted.add(seller_id)
                        channels = ", ".join(sorted({f"{n['channel']} ({n['level']})" for n in sent}))
                        view.notes.append(f"notified {seller_id}: {channels}")
                at_risk = {key[0] for key, row in view.rows.items() if row.get("level") in ("AT_RISK", "BREACH")} & {
                    drifting,
                    surface,
                }
                view.status = f"waiting for notifications: {int(deadline - time.monotonic())}s left"
                live.update(view.render())
                if at_risk and at_risk <= alerted:
                    break
                await asyncio.sleep(2.0)
    finally:
        await scorer.aclose()
    return summarise(console, scenario, view, started_at, (drifting, surface), urls["scorer"])


def console_link_of(seller_id: str, files: list[Path], scorer_url: str) -> str:
    """The console link of the seller's latest message in the outbox, or a fresh one signed
    as the notifier signs (with SMTP configured the messages are sent, not written)."""
    for path in sorted(files, key=lambda p: p.suffix != ".json"):
        text = path.read_text(encoding="utf-8", errors="replace")
        for link in CONSOLE_LINK.findall(text):
            if f"/console/{seller_id}" in link:
                return str(link)
    return console_links(base=scorer_url).link(seller_id, datetime.now(UTC))


def summarise(
    console: Console,
    scenario: Scenario,
    view: View,
    started_at: float,
    watched: tuple[str, ...],
    scorer_url: str = DEFAULT_URLS["scorer"],
) -> int:
    console.print()
    console.rule("what happened")
    ok = True
    warned_sellers: list[str] = []
    for key in scenario.seller_categories():
        if key[0] not in watched:
            continue
        row = view.rows.get(key, {})
        breach = true_breach_day(scenario, key, scenario.today)
        level = row.get("level", "?")
        if breach is None:
            continue
        lead = (breach - scenario.today).days
        warned = level in ("AT_RISK", "BREACH")
        ok &= warned and lead >= 5
        verdict = (
            f"[green]warned today, {lead} days before the true VTR falls below {FLOOR:.0%} on {breach}[/green]"
            if warned
            else f"[red]the scorer says {level} today, yet the true VTR falls below {FLOOR:.0%} on {breach} "
            f"(+{lead} d): no early warning[/red]"
        )
        console.print(f"{key[0]} {key[1]} {key[2]} ({scenario.role_of(key[0])}): scorer {level}, "
                      f"forecast breach in {row.get('days_to_breach')} d; {verdict}")  # fmt: skip
        if warned:
            warned_sellers.append(key[0])
    files = outbox_files(started_at)
    if warned_sellers:
        console.print(
            "\nconsole of each warned seller (the signed link of its messages, valid 7 days; it opens while"
            " these services run: with `make run` up, or `make demo` with --keep-running):"
        )
        for seller_id in dict.fromkeys(warned_sellers):
            console.print(f"  {seller_id}: {console_link_of(seller_id, files, scorer_url)}", soft_wrap=True)
    console.print(f"\n{len(files)} notification file(s) written to {OUTBOX.relative_to(ROOT)}/ during this demo:")
    for path in files:
        console.print(f"  {path.relative_to(ROOT)}")
    if not files:
        console.print("  (none: with SMTP configured the notifier sends instead of writing files)")
    return 0 if ok else 1


@contextlib.contextmanager
def stack_for_demo(console: Console, keep_running: bool) -> Iterator[tuple[dict[str, str], str]]:
    urls = running_stack()
    if urls is not None:
        tag = datetime.now(UTC).strftime("D%H%M%S")
        console.print(f"using the running services of `make run` (seller ids tagged -{tag})")
        yield urls, tag
        return
    stack = start_stack(console)
    try:
        yield stack.urls, ""
        if keep_running:
            console.print(
                "services still running (Ctrl-C stops them): " + ", ".join(f"{n} {u}" for n, u in stack.urls.items())
            )
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(1)
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--day-seconds", type=float, default=1.0, help="wall seconds per simulated day")
    parser.add_argument("--wait", type=float, default=240.0, help="seconds to wait for the notifier")
    parser.add_argument("--api-key", default="dev-api-key")
    parser.add_argument("--keep-running", action="store_true", help="leave a stack the demo started running")
    args = parser.parse_args(argv)
    console = Console()
    with stack_for_demo(console, args.keep_running) as (urls, tag):
        return asyncio.run(play(args, urls, console, tag))


if __name__ == "__main__":
    sys.exit(main())
