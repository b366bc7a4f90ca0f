"""``python -m tools.evaluate``: run every scenario family through the scorer on a real
database, compare its warnings with the simulator's ground truth, print a table, write JSON
(and, with ``--plot``, the calibration plot)."""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from tools.evaluate.families import FAMILIES
from tools.evaluate.gate import Verdict, check, quick_families
from tools.evaluate.report import BUCKETS, by_family, document, figures, markdown, plot_calibration
from tools.evaluate.run import ORDERS, Case, evaluate_scenario, live_label, noon, scratch_database
from tools.evaluate.services import SERVICES_LIVE, evaluate_through_services
from tools.simulate.scenario import Scenario, generate

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _pct(value: object) -> str:
    return "-" if value is None else f"{100 * float(value):.0f}%"  # type: ignore[arg-type]


def _table(title: str, rows: dict[str, dict[str, object]]) -> Table:
    table = Table(title=title)
    table.add_column("")
    for name, _, _ in BUCKETS:
        table.add_column(f"recall {name} d", justify="right")
    table.add_column("false alarms", justify="right")
    table.add_column("dtb MAE", justify="right")
    table.add_column("counts", justify="right")
    for label, f in rows.items():
        table.add_row(
            label,
            *(f"{_pct(f[f'recall_{name}'])} ({f[f'n_{name}']})" for name, _, _ in BUCKETS),
            f"{_pct(f['false_alarm_rate'])} ({f['n_healthy']})",
            "-" if f["days_to_breach_mae"] is None else f"{f['days_to_breach_mae']:.2f} d",
            str(f["counts_match"]),
        )
    return table


async def main(arguments: argparse.Namespace) -> int:  # noqa: C901 - the command line's modes (quick, live, through services) read top to bottom
    console = Console()
    today = datetime.now(UTC).date()
    at_noon = arguments.at == "noon" and not arguments.through_services
    known_at = noon(today) if at_noon else datetime.now(UTC).replace(microsecond=0)
    cases: list[Case] = []
    packages_by_order: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    details_by_order: dict[str, list[tuple[float, bool, str]]] = defaultdict(list)
    #: (family, seed, order, probability, valid, group) of every pending package, for --packages.
    package_rows: list[tuple[str, int, str, float, bool, str]] = []
    started = time.monotonic()
    admin_url = None if arguments.sqlite else os.environ.get("VTR_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL)
    runs: list[tuple[str, int, Scenario, str]] = []
    with tempfile.TemporaryDirectory() as directory:
        for family in arguments.families:
            for seed in range(arguments.first_seed, arguments.first_seed + arguments.seeds):
                hour = (known_at - datetime.combine(today, datetime.min.time(), UTC)).total_seconds() / 3600
                scenario = generate(FAMILIES[family](seed, hour), seed=seed, today=today)
                if arguments.through_services:
                    async with scratch_database(admin_url, directory) as url:
                        workdir = Path(directory) / f"{family}-{seed}"
                        workdir.mkdir()
                        outcome = await evaluate_through_services(family, seed, scenario, url, workdir, arguments.live)
                    cases.extend(outcome.cases)
                    packages_by_order[SERVICES_LIVE if arguments.live else "services"].extend(outcome.packages)
                    console.log(f"{family} seed {seed} through the services: {len(outcome.cases)} seller-categories")
                    continue
                runs.extend((family, seed, scenario, order) for order in arguments.orders)

        async def run(family: str, seed: int, scenario: Scenario, order: str) -> None:
            async with limit, scratch_database(admin_url, directory) as url:
                outcome = await evaluate_scenario(family, seed, scenario, order, url, known_at, arguments.live)
            cases.extend(outcome.cases)
            packages_by_order[order].extend(outcome.packages)
            details_by_order[order].extend(outcome.details)
            package_rows.extend((family, seed, order, *detail) for detail in outcome.details)
            if arguments.live:
                packages_by_order[live_label(order)].extend(outcome.live_packages)
            console.log(f"{family} seed {seed} {order}: {len(outcome.cases)} seller-categories")

        limit = asyncio.Semaphore(arguments.parallel)
        await asyncio.gather(*(run(*item) for item in runs))
    cases.sort(key=lambda case: (case.order, case.family, case.seed, case.seller_id, case.marketplace, case.category))
    report = document(cases, packages_by_order, details_by_order)
    report["seconds"] = round(time.monotonic() - started, 1)
    report["today"] = today.isoformat()
    orders = [SERVICES_LIVE if arguments.live else "services"] if arguments.through_services else arguments.orders
    if arguments.live and not arguments.through_services:
        orders = [label for order in orders for label in (order, live_label(order))]
    for order in orders:
        rows = {"all": figures([c for c in cases if c.order == order])}
        rows.update(by_family([c for c in cases if c.order == order]))
        console.print(_table(f"{order} (at_risk when breach probability reaches the scorer's setting)", rows))
        calibration = report["by_order"][order]["calibration"]
        console.print(f"{order}: Brier {calibration['brier']:.4f} over {calibration['n']} pending packages")
    arguments.json.parent.mkdir(parents=True, exist_ok=True)
    arguments.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    console.print(f"wrote {arguments.json}")
    if arguments.packages is not None:
        arguments.packages.parent.mkdir(parents=True, exist_ok=True)
        arguments.packages.write_bytes(orjson.dumps(package_rows))
        console.print(f"wrote {arguments.packages}")
    if arguments.write_docs and arguments.live:
        write_live_docs(report)
        console.print(f"wrote the live figures of {DOCS_PAGE}")
    elif arguments.write_docs:
        write_docs(report, orders[0])
        console.print(f"wrote {DOCS_FIGURES} and the figures of {DOCS_PAGE}")
    if arguments.quick:
        verdicts = check(cases)
        console.print(_gate_table(verdicts))
        if not all(verdict.passed for verdict in verdicts):
            console.print("[red]the quality gate failed[/red]")
            return 1
    if arguments.plot is not None:
        order = orders[0]
        plot_calibration(
            report["by_order"][order]["calibration"]["table"],
            arguments.plot,
            f"make evaluate, {order}: Brier {report['by_order'][order]['calibration']['brier']:.3f}",
        )
        console.print(f"wrote {arguments.plot}")
    return 0


DOCS_PAGE = Path("docs/forecast.md")
DOCS_FIGURES = Path("docs/forecast")
BEGIN, END = "<!-- evaluate:begin -->", "<!-- evaluate:end -->"


LIVE_BEGIN, LIVE_END = "<!-- evaluate-live:begin -->", "<!-- evaluate-live:end -->"


def write_live_docs(report: dict[str, object]) -> None:
    """The live reading's block of docs/forecast.md (each order read live and after a refresh)."""
    page = DOCS_PAGE.read_text()
    head, rest = page.split(LIVE_BEGIN, 1)
    _, tail = rest.split(LIVE_END, 1)
    DOCS_PAGE.write_text(head + LIVE_BEGIN + "\n" + markdown(report) + LIVE_END + tail)  # type: ignore[arg-type]


def _gate_table(verdicts: list[Verdict]) -> Table:
    table = Table(title="quality gate (tools/evaluate/gate.py)")
    for column in ("figure", "measured", "limit", ""):
        table.add_column(column)
    for verdict in verdicts:
        limit = verdict.limit
        measured = "-" if verdict.value is None else f"{verdict.value:.3g} ({verdict.detail})"
        table.add_row(
            limit.figure,
            measured,
            f"{'>=' if limit.kind == 'min' else '<='} {limit.bound:g}",
            "ok" if verdict.passed else "FAILED",
        )
    return table


def write_docs(report: dict[str, object], order: str) -> None:
    """The JSON, the calibration plot and the figures block of docs/forecast.md."""
    DOCS_FIGURES.mkdir(parents=True, exist_ok=True)
    summary = {key: value for key, value in report.items() if key != "cases"}
    (DOCS_FIGURES / "evaluation.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    by_order = report["by_order"]
    calibration = by_order[order]["calibration"]  # type: ignore[index]
    plot_calibration(
        calibration["table"],
        DOCS_FIGURES / "calibration.png",
        f"make evaluate, {order}: Brier {calibration['brier']:.3f}",
    )
    page = DOCS_PAGE.read_text()
    head, rest = page.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOCS_PAGE.write_text(head + BEGIN + "\n" + markdown(report) + END + tail)  # type: ignore[arg-type]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.evaluate", description=__doc__)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the quality gate: a few families, one seed, both orders; exit 1 past a limit of tools/evaluate/gate.py",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="also read as a seller would: the scorer's own timer and triggers from a fresh deployment, "
        "80 s after the feed (in-process, on a virtual clock)",
    )
    parser.add_argument("--parallel", type=int, default=1, help="scenario runs at once (each on its own database)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per family")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--orders", nargs="+", default=list(ORDERS), choices=list(ORDERS))
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    parser.add_argument(
        "--at",
        choices=("noon", "now"),
        default="noon",
        help="the moment the in-process run evaluates at: today's noon (reproducible) or now (as the services see it)",
    )
    parser.add_argument(
        "--through-services",
        action="store_true",
        help="replay through the real ingest and scorer processes and a broker (slow; ignores --orders)",
    )
    parser.add_argument("--json", type=Path, default=Path(".vtr/evaluate/latest.json"))
    parser.add_argument("--plot", type=Path, default=None, help="write the calibration plot (PNG) here")
    parser.add_argument(
        "--packages",
        type=Path,
        default=None,
        help="write every pending package's (family, seed, order, probability, valid, truth/stage) here (JSON)",
    )
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help="write docs/forecast/ (JSON, plot) and the figures of docs/forecast.md",
    )
    arguments = parser.parse_args(argv)
    if arguments.quick:
        arguments.families = quick_families(list(FAMILIES))
        arguments.seeds = 1
        arguments.orders = list(ORDERS)
        arguments.parallel = max(arguments.parallel, 2)
    return arguments


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse())))
