"""Which ``VTR_AT_RISK_BREACH_PROBABILITY`` to ship: recall and false alarms of every
threshold, from the cases of a ``make evaluate`` run (its JSON), and the threshold the
stated rule picks (:func:`chosen`): the lowest whose false alarms stay at or under half the
5% target. The rule is applied to the training seeds' run (1-2) and the threshold then
checked on seeds it was not chosen on (docs/forecast.md section 6)."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from tools.evaluate.report import BUCKETS, MIN_TOTAL

AT_RISK_BELOW = 0.955
THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
#: The rule's ceiling on the false-alarm rate: half the target of issue 20 (5%), the other
#: half a margin for seeds and worlds the threshold was not chosen on.
RULE_FALSE_ALARMS = 0.025


def warned(case: dict[str, object], threshold: float) -> bool:
    vtr = case["vtr"]
    if case["level"] == "BREACH":
        return True
    if case["level"] not in ("AT_RISK", "BREACH") and case["total"] < MIN_TOTAL:  # type: ignore[operator]
        return False
    probability = float(case["breach_probability"] or 0.0)  # type: ignore[arg-type]
    return probability >= threshold or (vtr is not None and float(vtr) < AT_RISK_BELOW)  # type: ignore[arg-type]


def false_alarm_rate(cases: list[dict[str, object]], threshold: float) -> float:
    healthy = [c for c in cases if c["true_lead"] is None]
    return sum(warned(c, threshold) for c in healthy) / len(healthy) if healthy else 0.0


def chosen(cases: list[dict[str, object]], ceiling: float = RULE_FALSE_ALARMS) -> float | None:
    """The lowest threshold of :data:`THRESHOLDS` whose false-alarm rate (over ``cases``, one
    order) is at most ``ceiling``: the most breaches warned for false alarms kept at half
    the target (None: none is)."""
    return next((t for t in THRESHOLDS if false_alarm_rate(cases, t) <= ceiling), None)


def main(path: Path) -> None:
    cases = [c for c in orjson.loads(path.read_bytes())["cases"] if c["total"] >= MIN_TOTAL]
    for order in sorted({c["order"] for c in cases}):
        print(order)
        of_order = [c for c in cases if c["order"] == order]
        for threshold in THRESHOLDS:
            parts = []
            for name, low, high in BUCKETS:
                bucket = [c for c in of_order if c["true_lead"] is not None and low <= c["true_lead"] <= high]
                hits = sum(warned(c, threshold) for c in bucket)
                parts.append(f"{name}: {hits}/{len(bucket)}")
            healthy = [c for c in of_order if c["true_lead"] is None]
            alarms = sum(warned(c, threshold) for c in healthy)
            print(f"  {threshold:.2f}  " + "  ".join(parts) + f"  false alarms {alarms}/{len(healthy)}")
        pick = chosen(of_order)
        print(f"  the rule (lowest with false alarms <= {RULE_FALSE_ALARMS:.1%}): {'none' if pick is None else pick}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".vtr/evaluate/latest.json"))
