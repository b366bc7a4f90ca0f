"""``python -m tools.simulate``: print a scenario's ground truth, replay it through the
running services, and check the scorer against the truth.

    python -m tools.simulate --preset demo --seed 7              # truth only
    python -m tools.simulate --preset small --replay --check     # against `make run`
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, date, datetime

from rich.console import Console
from rich.table import Table

from tools.simulate.driver import Driver, ScorerClient, wait_for_agreement
from tools.simulate.plan import replay_plan
from tools.simulate.presets import PRESETS
from tools.simulate.scenario import Scenario, generate
from tools.simulate.truth import true_breach_day, vtr_by_key
from tools.simulate.webhooks import WebhookSecrets


def truth_table(scenario: Scenario, known_at: datetime) -> Table:
    table = Table(title=f"Ground truth on {scenario.today} (seed {scenario.seed})")
    for column in ("seller", "role", "marketplace", "category", "valid/total", "VTR", "true breach"):
        table.add_column(column)
    for key, tally in sorted(vtr_by_key(scenario, scenario.today, known_at).items()):
        breach = true_breach_day(scenario, key, scenario.today)
        table.add_row(
            key[0],
            scenario.role_of(key[0]),
            key[1],
            key[2],
            f"{tally.valid}/{tally.total}",
            f"{tally.vtr:.2%}" if tally.vtr is not None else "-",
            f"{breach} (+{(breach - scenario.today).days}d)" if breach else "-",
        )
    return table


async def replay_and_check(args: argparse.Namespace, scenario: Scenario, known_at: datetime, console: Console) -> int:
    steps = replay_plan(scenario, known_at)
    if args.replay:
        async with Driver(
            args.ingest_url, args.api_key, WebhookSecrets.from_ingest_settings(), args.concurrency
        ) as driver:

            async def progress(step: object) -> None:
                if getattr(step, "day", None) and step.day.day % 5 == 0:  # type: ignore[attr-defined]
                    console.print(f"  replayed up to {step.day}: {driver.stats.summary()}")  # type: ignore[attr-defined]

            stats = await driver.replay(steps, day_seconds=args.day_seconds, after_step=progress)
            console.print(f"replay done: {stats.summary()}")
    if not args.check:
        return 0
    scorer = ScorerClient(args.scorer_url, args.api_key)
    try:
        truth, mismatches = await wait_for_agreement(scenario, scorer, scenario.today, known_at, args.timeout)
    finally:
        await scorer.aclose()
    if mismatches:
        console.print(f"[red]{len(mismatches)} of {len(truth)} seller-categories disagree:[/red]")
        for mismatch in mismatches:
            console.print(f"  {mismatch}")
        return 1
    console.print(f"[green]scorer and ground truth agree on all {len(truth)} seller-categories[/green]")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--today", type=date.fromisoformat, default=None, help="default: today (UTC)")
    parser.add_argument("--replay", action="store_true", help="send the scenario to the ingest")
    parser.add_argument("--check", action="store_true", help="compare the scorer with the ground truth")
    parser.add_argument("--ingest-url", default="http://127.0.0.1:8000")
    parser.add_argument("--scorer-url", default="http://127.0.0.1:8001")
    parser.add_argument("--api-key", default="dev-api-key")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--day-seconds", type=float, default=0.0, help="wall seconds per simulated day")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the scorer to agree")
    args = parser.parse_args(argv)
    known_at = datetime.now(UTC).replace(microsecond=0)
    today = args.today or known_at.date()
    if today > known_at.date():
        parser.error("--today cannot be in the future")
    if args.today and today < known_at.date():
        known_at = datetime.combine(today, datetime.max.time(), UTC).replace(microsecond=0)
    scenario = generate(PRESETS[args.preset](), args.seed, today)
    console = Console()
    console.print(truth_table(scenario, known_at))
    return asyncio.run(replay_and_check(args, scenario, known_at, console))


if __name__ == "__main__":
    sys.exit(main())
