"""The quality gate of ``python -m tools.evaluate --quick`` (run by ``make test``).

A few families, one seed, both orders: small enough for every test run, and enough to
catch a change that stops short-lead breaches being warned, warns healthy sellers, warns
for a push-source outage, or miscounts. The limits are the table :data:`LIMITS` (quoted in
docs/forecast.md, "The quality gate"); a run fails when any figure is past its limit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tools.evaluate.run import ORDERS, Case

#: Families of the quick run, when they exist: a failure caught at every lead (carrier_stop),
#: healthy controls (comfortable), a push-source outage nobody must be warned for, and the
#: families whose transit follows the promise (any family named ``promise...``).
QUICK_FAMILIES: tuple[str, ...] = ("carrier_stop", "comfortable", "source_outage")
QUICK_FAMILY_PREFIXES: tuple[str, ...] = ("promise",)
MIN_TOTAL = 10


def quick_families(available: Sequence[str]) -> list[str]:
    chosen = [family for family in QUICK_FAMILIES if family in available]
    chosen += [family for family in available if family.startswith(QUICK_FAMILY_PREFIXES) and family not in chosen]
    return chosen


def _eligible(cases: Sequence[Case]) -> list[Case]:
    return [case for case in cases if case.total >= MIN_TOTAL]


def _recall_short(cases: Sequence[Case]) -> tuple[float | None, str]:
    short = [c for c in _eligible(cases) if c.true_lead is not None and 1 <= c.true_lead <= 7]
    hits = sum(c.warned for c in short)
    return (hits / len(short) if short else None), f"{hits}/{len(short)}"


def _false_alarms(cases: Sequence[Case]) -> tuple[float | None, str]:
    healthy = [c for c in _eligible(cases) if c.true_lead is None]
    hits = sum(c.warned for c in healthy)
    return (hits / len(healthy) if healthy else None), f"{hits}/{len(healthy)}"


def _counts_wrong(cases: Sequence[Case]) -> tuple[float | None, str]:
    wrong = sum(not c.counts_match for c in cases)
    return float(wrong), f"{wrong} of {len(cases)}"


def _source_outage_warned(cases: Sequence[Case]) -> tuple[float | None, str]:
    outage = [c for c in _eligible(cases) if c.family == "source_outage" and c.true_lead is None]
    hits = sum(c.warned for c in outage)
    return (float(hits) if outage else None), f"{hits}/{len(outage)}"


def _orders_disagree(cases: Sequence[Case]) -> tuple[float | None, str]:
    levels: dict[tuple[bool, str, int, str, str, str], set[str]] = {}
    for c in cases:
        # Live readings are compared with live readings, readings after a refresh with those.
        key = (c.order in ORDERS, c.family, c.seed, c.seller_id, c.marketplace, c.category)
        levels.setdefault(key, set()).add(c.level)
    disagree = sum(len(found) > 1 for found in levels.values())
    return float(disagree), f"{disagree} of {len(levels)}"


@dataclass(frozen=True)
class Limit:
    figure: str
    measure: Callable[[Sequence[Case]], tuple[float | None, str]]
    #: ``min``: the figure must be at least ``bound``; ``max``: at most.
    kind: str
    bound: float
    why: str


LIMITS: tuple[Limit, ...] = (
    Limit("recall 1-7 d", _recall_short, "min", 0.95, "breaches within a week are warned (target 97% / 95%)"),
    Limit("false alarms", _false_alarms, "max", 0.05, "healthy seller-categories at AT_RISK or worse (target 5%)"),
    Limit("counts wrong", _counts_wrong, "max", 0, "today's total and valid equal the truth's, every case"),
    Limit("source_outage warned", _source_outage_warned, "max", 0, "a push-source outage warns no seller"),
    Limit("orders disagree", _orders_disagree, "max", 0, "scans-first and shipments-first end with the same levels"),
)


@dataclass(frozen=True)
class Verdict:
    limit: Limit
    value: float | None
    detail: str

    @property
    def passed(self) -> bool:
        if self.value is None:
            return True
        return self.value >= self.limit.bound if self.limit.kind == "min" else self.value <= self.limit.bound


def check(cases: Sequence[Case]) -> list[Verdict]:
    """Every limit's verdict on the cases of a run (each order counts: both must pass)."""
    return [Verdict(limit, *limit.measure(cases)) for limit in LIMITS]


def limits_markdown() -> str:
    lines = ["| figure | limit | why |", "|---|---|---|"]
    for limit in LIMITS:
        bound = f"{100 * limit.bound:.0f}%" if 0 < limit.bound < 1 else f"{limit.bound:.0f}"
        lines.append(f"| {limit.figure} | {'≥' if limit.kind == 'min' else '≤'} {bound} | {limit.why} |")
    return "\n".join(lines) + "\n"
