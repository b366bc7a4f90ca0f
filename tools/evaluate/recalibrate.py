"""``python -m tools.evaluate.recalibrate PACKAGES.json``: what a per-stage isotonic
recalibration (services/scorer/domain/model/calibration.py) would do to the pending
packages' probabilities of a run (``python -m tools.evaluate --packages PACKAGES.json``).

Cross-validated: the map of each stage (unscanned, scanned, silent: what the scorer knows
of a package) is fitted on the other folds' packages and applied to the fold's, folds
being the seeds (the same failure modes, other draws) or the families (a failure mode the
fit has not seen). Prints the Brier score and the reliability by tenth and by decile,
before and after, over all packages and per the category's truth."""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from services.scorer.domain.model.calibration import fit_isotonic
from tools.evaluate.report import calibration

#: A package of the run: family, seed, order, probability, valid, "truth/stage".
Row = tuple[str, int, str, float, bool, str]


def cross_validated(rows: Sequence[Row], fold_of: Callable[[Row], Any], min_block: float) -> list[float]:
    """Each package's recalibrated probability, from the maps fitted without its fold."""
    folds = sorted({fold_of(row) for row in rows})
    result = [0.0] * len(rows)
    for fold in folds:
        training: dict[str, list[tuple[float, bool]]] = defaultdict(list)
        for row in rows:
            if fold_of(row) != fold:
                training[row[5].split("/")[1]].append((row[3], row[4]))
        maps = {stage: fit_isotonic(pairs, min_block) for stage, pairs in training.items()}
        for index, row in enumerate(rows):
            if fold_of(row) == fold:
                stage_map = maps.get(row[5].split("/")[1])
                result[index] = row[3] if stage_map is None else stage_map(row[3])
    return result


def _summary(label: str, pairs: list[tuple[float, bool]]) -> str:
    found = calibration(pairs)
    misses = [row for row in found["table"] + found["deciles"] if abs(row["error"]) > 0.05]
    worst = max((abs(row["error"]) for row in found["table"] + found["deciles"]), default=0.0)
    return (
        f"{label:<34} n={found['n']:>6} Brier {found['brier']:.4f}  groups off by >0.05: {len(misses):>2}"
        f"  worst {worst:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("packages", type=Path)
    parser.add_argument("--min-block", type=float, default=100.0)
    arguments = parser.parse_args()
    rows: list[Row] = [tuple(row) for row in orjson.loads(arguments.packages.read_bytes())]  # type: ignore[misc]
    schemes: dict[str, Callable[[Row], Any]] = {"by seed": lambda row: row[1], "by family": lambda row: row[0]}
    for name, fold_of in schemes.items():
        recalibrated = cross_validated(rows, fold_of, arguments.min_block)
        print(f"cross-validated {name} (min block {arguments.min_block:.0f} packages):")
        for truth in ("all", "healthy", "breaching"):
            chosen = [i for i, row in enumerate(rows) if truth == "all" or row[5].startswith(truth)]
            before = [(rows[i][3], rows[i][4]) for i in chosen]
            after = [(recalibrated[i], rows[i][4]) for i in chosen]
            print("  " + _summary(f"{truth}, as predicted", before))
            print("  " + _summary(f"{truth}, recalibrated", after))
        after_all = calibration([(recalibrated[i], row[4]) for i, row in enumerate(rows)])
        print(
            "  deciles after: "
            + ", ".join(f"{r['mean_probability']:.3f}/{r['observed_valid']:.3f}" for r in after_all["deciles"])
        )


if __name__ == "__main__":
    main()
