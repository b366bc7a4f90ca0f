"""How early a family's failure is visible at all, and recall against that: from the cases
of a ``make evaluate`` run (its JSON), ``python -m tools.evaluate.visibility [path]``.

A failure can only be warned of once the data can show it. Per kind of failure, the
earliest moment the simulated carriers' scans can show it (``VISIBLE_AFTER_HOURS``, from the
simulator's own timings in ``tools/simulate/scenario.py``), and, per case, how long ago its
failure began (from the family's configuration: the stop, the lane's failing phase, the
blackout). Recall is then counted twice: over every breaching case, and over the cases whose
failure began at least that long ago (visible at all).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from tools.evaluate.families import FAMILIES
from tools.evaluate.report import BUCKETS, MIN_TOTAL
from tools.simulate.catalog import SERVICES
from tools.simulate.scenario import Lane, ScenarioConfig

#: The earliest moment, in hours after a failure began, that the scans can show it:
#: a parcel never picked up once it is older than the usual pick-up (at most 1.2 days);
#: a carrier outage once no scan came for the 12 hours carrier health waits; a structural
#: cause (a carrier Amazon does not integrate, a service without delivery scans for an
#: order that needs one) at once; a parcel lost in transit once its silence after the
#: export scan (at 45% of a transit of 5 days or more) outlasts the usual silence there
#: (30% of the transit): about 5.25 days; a missing delivery scan once the first parcel
#: handed over since would have been delivered (5 days).
VISIBLE_AFTER_HOURS: dict[str, float] = {
    "pickup": 30.0,
    "outage": 12.0,
    "structural": 0.0,
    "transit": 126.0,
    "delivery": 120.0,
}


def _phase_kind(lane: Lane) -> tuple[str, int] | None:
    """The kind of the lane's first failing phase and the day it began (relative to today)."""
    base = lane.failures
    for phase in sorted(lane.phases, key=lambda p: p.from_day):
        structural = any(not SERVICES[key].integrated or not SERVICES[key].delivery_scans for key, _ in phase.services)
        if structural and (phase.services != lane.services or phase.values != lane.values):
            return "structural", phase.from_day
        failures = phase.failures
        if failures is None:
            continue
        for kind, field in (("transit", "lost_in_transit"), ("delivery", "no_delivery_scan"), ("pickup", "no_pickup")):
            before = getattr(base, field) if base is not None else 0.01
            if getattr(failures, field) >= 2 * max(before, 0.01):
                return kind, phase.from_day
    return None


def onset(config: ScenarioConfig, seller_id: str, category: str, hour: float) -> tuple[str, float] | None:
    """The kind of failure of one seller-category and the hours since it began (None: none)."""
    seller = next((s for s in config.sellers if s.seller_id == seller_id), None)
    if seller is None:
        return None
    for lane in seller.lanes:
        if lane.category != category:
            continue
        services = {key for key, _ in lane.services}
        for stop in config.stops:
            if stop.seller_id == seller_id and stop.service_key in services:
                return "pickup", hour - 24.0 * stop.from_day
        for blackout in config.blackouts:
            if blackout.service_key in services:
                return "outage", hour - blackout.from_hour
        found = _phase_kind(lane)
        if found is not None:
            return found[0], hour - 24.0 * found[1]
    return None


def visibility_table(cases: list[dict[str, Any]], hour: float = 12.0) -> dict[str, dict[str, list[int]]]:
    """Per family and lead bucket: [warned, breaching] over all, and over the visible ones."""
    configs: dict[tuple[str, int], ScenarioConfig] = {}
    table: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0]))
    for case in cases:
        if case["total"] < MIN_TOTAL or case["true_lead"] is None:
            continue
        key = (case["family"], case["seed"])
        if key not in configs:
            configs[key] = FAMILIES[case["family"]](case["seed"], hour)
        cause = onset(configs[key], case["seller_id"], case["category"], hour)
        visible = cause is not None and cause[1] >= VISIBLE_AFTER_HOURS[cause[0]]
        warned = case["level"] in ("AT_RISK", "BREACH")
        for name, low, high in BUCKETS:
            if low <= case["true_lead"] <= high:
                for row in (table[case["family"]][name], table["all"][name]):
                    row[0] += warned
                    row[1] += 1
                    row[2] += warned and visible
                    row[3] += visible
    return table


def markdown(table: dict[str, dict[str, list[int]]]) -> str:
    lines = [
        "| family | " + " | ".join(f"recall {name} d: all / visible" for name, _, _ in BUCKETS) + " |",
        "|---|" + "---|" * len(BUCKETS),
    ]
    for family in sorted(table, key=lambda f: (f != "all", f)):
        cells = []
        for name, _, _ in BUCKETS:
            warned, count, warned_visible, visible = table[family].get(name, [0, 0, 0, 0])
            cells.append("-" if not count else f"{warned}/{count} / {warned_visible}/{visible}")
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(path: Path) -> None:
    report = orjson.loads(path.read_bytes())
    for order in sorted({case["order"] for case in report["cases"]}):
        print(f"**{order}**\n")
        print(markdown(visibility_table([c for c in report["cases"] if c["order"] == order])))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".vtr/evaluate/latest.json"))
