"""Which ``VTR_AT_RISK_BREACH_PROBABILITY`` to ship: recall and false alarms of every
threshold, from the cases of a ``make evaluate`` run (its JSON)."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from tools.evaluate.report import BUCKETS, MIN_TOTAL

AT_RISK_BELOW = 0.955
THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def warned(case: dict[str, object], threshold: float) -> bool:
    vtr = case["vtr"]
    if case["level"] == "BREACH":
        return True
    if case["level"] not in ("AT_RISK", "BREACH") and case["total"] < MIN_TOTAL:  # type: ignore[operator]
        return False
    probability = float(case["breach_probability"] or 0.0)  # type: ignore[arg-type]
    return probability >= threshold or (vtr is not None and float(vtr) < AT_RISK_BELOW)  # type: ignore[arg-type]


def main(path: Path) -> None:
    cases = [c for c in orjson.loads(path.read_bytes())["cases"] if c["total"] >= MIN_TOTAL]
    for order in sorted({c["order"] for c in cases}):
        print(order)
        chosen = [c for c in cases if c["order"] == order]
        for threshold in THRESHOLDS:
            parts = []
            for name, low, high in BUCKETS:
                bucket = [c for c in chosen if c["true_lead"] is not None and low <= c["true_lead"] <= high]
                hits = sum(warned(c, threshold) for c in bucket)
                parts.append(f"{name}: {hits}/{len(bucket)}")
            healthy = [c for c in chosen if c["true_lead"] is None]
            alarms = sum(warned(c, threshold) for c in healthy)
            print(f"  {threshold:.2f}  " + "  ".join(parts) + f"  false alarms {alarms}/{len(healthy)}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".vtr/evaluate/latest.json"))
