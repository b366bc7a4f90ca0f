"""The figures of ``make evaluate``: recall per lead-time bucket and family, false alarms,
``days_to_breach`` error, and the calibration of package probabilities."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tools.evaluate.run import Case

#: Lead-time buckets (days from today to the true breach).
BUCKETS: tuple[tuple[str, int, int], ...] = (("1-3", 1, 3), ("4-7", 4, 7), ("8-14", 8, 14))
#: Categories with fewer packages are never warned above WATCH (by design), so they are left out.
MIN_TOTAL = 10


def _share(hits: int, count: int) -> float | None:
    return None if count == 0 else hits / count


def figures(cases: Sequence[Case]) -> dict[str, Any]:
    eligible = [case for case in cases if case.total >= MIN_TOTAL]
    result: dict[str, Any] = {"cases": len(eligible)}
    for name, low, high in BUCKETS:
        bucket = [c for c in eligible if c.true_lead is not None and low <= c.true_lead <= high]
        result[f"recall_{name}"] = _share(sum(c.warned for c in bucket), len(bucket))
        result[f"n_{name}"] = len(bucket)
    healthy = [c for c in eligible if c.true_lead is None]
    result["false_alarm_rate"] = _share(sum(c.warned for c in healthy), len(healthy))
    result["n_healthy"] = len(healthy)
    breached = [c for c in eligible if c.true_lead == 0]
    result["breached_today"] = len(breached)
    result["breached_today_flagged"] = sum(c.level == "BREACH" for c in breached)
    errors = [
        abs(c.days_to_breach - c.true_lead)
        for c in eligible
        if c.warned and c.true_lead is not None and c.true_lead >= 1 and c.days_to_breach is not None
    ]
    result["days_to_breach_mae"] = sum(errors) / len(errors) if errors else None
    result["days_to_breach_n"] = len(errors)
    result["counts_match"] = f"{sum(c.counts_match for c in cases)}/{len(cases)}"
    return result


def _reliability_row(label: str, items: Sequence[tuple[float, bool]]) -> dict[str, Any]:
    """One group's mean predicted and observed valid share, the error (observed less
    predicted) and the binomial standard error of the observed share."""
    predicted = sum(p for p, _ in items) / len(items)
    observed = sum(valid for _, valid in items) / len(items)
    return {
        "bin": label,
        "n": len(items),
        "mean_probability": predicted,
        "observed_valid": observed,
        "error": observed - predicted,
        "standard_error": (predicted * (1.0 - predicted) / len(items)) ** 0.5,
    }


def deciles(pairs: Sequence[tuple[float, bool]], groups: int = 10) -> list[dict[str, Any]]:
    """Equal-count groups of the packages sorted by predicted probability (deciles)."""
    ordered = sorted(pairs, key=lambda pair: pair[0])
    rows = []
    for index in range(groups):
        items = ordered[index * len(ordered) // groups : (index + 1) * len(ordered) // groups]
        if items:
            rows.append(_reliability_row(f"D{index + 1}", items))
    return rows


def calibration(packages: Iterable[tuple[float, bool]], bins: int = 10) -> dict[str, Any]:
    pairs = list(packages)
    if not pairs:
        return {"brier": None, "n": 0, "table": [], "deciles": []}
    brier = sum((p - float(valid)) ** 2 for p, valid in pairs) / len(pairs)
    grouped: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for p, valid in pairs:
        grouped[min(bins - 1, int(p * bins))].append((p, valid))
    table = [_reliability_row(f"{b / bins:.1f}-{(b + 1) / bins:.1f}", items) for b, items in sorted(grouped.items())]
    return {"brier": brier, "n": len(pairs), "table": table, "deciles": deciles(pairs)}


def by_family(cases: Sequence[Case]) -> dict[str, dict[str, Any]]:
    grouped: dict[str, list[Case]] = defaultdict(list)
    for case in cases:
        grouped[case.family].append(case)
    return {family: figures(items) for family, items in sorted(grouped.items())}


#: The middle of the probability scale, where the reliability table missed its target.
MIDDLE = (0.1, 0.9)


def calibration_split(details: Iterable[tuple[float, bool, str]]) -> dict[str, dict[str, Any]]:
    """Reliability per group (the category's truth x the package's stage, see
    ``run.stage_of``): over all its packages, over those predicted in :data:`MIDDLE`, and
    its table by tenth of the probability scale."""
    grouped: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for probability, valid, group in details:
        grouped[group].append((probability, valid))
        grouped[f"{group.split('/')[0]}/all"].append((probability, valid))
        grouped[f"all/{group.split('/')[1]}"].append((probability, valid))
    split = {}
    for group, pairs in sorted(grouped.items()):
        middle = [pair for pair in pairs if MIDDLE[0] <= pair[0] < MIDDLE[1]]
        split[group] = {
            "all": _reliability_row(group, pairs),
            "middle": _reliability_row(group, middle) if middle else None,
            "table": calibration(pairs)["table"],
        }
    return split


def document(
    cases: Sequence[Case],
    packages_by_order: dict[str, list[tuple[float, bool]]],
    details_by_order: dict[str, list[tuple[float, bool, str]]] | None = None,
) -> dict[str, Any]:
    orders = sorted({case.order for case in cases})
    return {
        "by_order": {
            order: {
                "overall": figures([c for c in cases if c.order == order]),
                "families": by_family([c for c in cases if c.order == order]),
                "calibration": calibration(packages_by_order.get(order, [])),
                "calibration_split": calibration_split((details_by_order or {}).get(order, [])),
            }
            for order in orders
        },
        "cases": [asdict(case) for case in cases],
    }


def plot_calibration(table: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    axis.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="perfect")
    xs = [row["mean_probability"] for row in table]
    ys = [row["observed_valid"] for row in table]
    sizes = [max(12, min(300, row["n"] / 3)) for row in table]
    axis.scatter(xs, ys, s=sizes, color="#1f77b4", zorder=3, label="pending packages (size = count)")
    axis.plot(xs, ys, color="#1f77b4", linewidth=1)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("predicted probability of valid tracking in time")
    axis.set_ylabel("share that became valid in time")
    axis.set_title(title, fontsize=9)
    axis.legend(loc="upper left", fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def markdown(report: dict[str, Any]) -> str:
    """The figures of a run as Markdown tables (docs/forecast.md's generated block)."""
    lines: list[str] = []
    for order, entry in report["by_order"].items():
        lines += [
            f"**{order}**",
            "",
            "| family | recall 1-3 d | recall 4-7 d | recall 8-14 d | false alarms "
            "| `days_to_breach` MAE | counts equal |",
            "|---|---|---|---|---|---|---|",
        ]
        rows = {"**all**": entry["overall"], **entry["families"]}
        for family, f in rows.items():
            cells = [
                "-" if f[f"recall_{name}"] is None else f"{100 * f[f'recall_{name}']:.0f}% (n={f[f'n_{name}']})"
                for name, _, _ in BUCKETS
            ]
            alarms = (
                "-" if f["false_alarm_rate"] is None else f"{100 * f['false_alarm_rate']:.0f}% (n={f['n_healthy']})"
            )
            mae = "-" if f["days_to_breach_mae"] is None else f"{f['days_to_breach_mae']:.2f} d"
            lines.append(f"| {family} | " + " | ".join(cells) + f" | {alarms} | {mae} | {f['counts_match']} |")
        calibration = entry["calibration"]
        lines += ["", f"Brier score of the pending packages' probabilities: {calibration['brier']:.4f} "
                  f"(n={calibration['n']}).", ""]  # fmt: skip
    first = next(iter(report["by_order"].values()))["calibration"]
    for title, rows in (
        ("Reliability by predicted probability (first order above)", first["table"]),
        ("Reliability by decile (equal-count tenths of the pending packages, sorted by predicted)", first["deciles"]),
    ):
        lines += [
            f"{title}; error = observed less predicted, within 0.05 is the target:",
            "",
            "| group | packages | mean predicted | observed valid | error | ±2 SE | within 0.05 |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [_reliability_line(row) for row in rows]
        lines.append("")
    split = next(iter(report["by_order"].values())).get("calibration_split")
    if split:
        lines += [
            "Reliability by the category's truth (breaching within 14 days or healthy) and the package's "
            "stage (first order above), over all its packages and over those predicted 0.1-0.9:",
            "",
            "| group | packages | mean predicted | observed valid | error | in 0.1-0.9 | mean predicted "
            "| observed valid | error |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for group, entry in split.items():
            row, middle = entry["all"], entry["middle"]
            line = (
                f"| {group} | {row['n']} | {row['mean_probability']:.3f} | {row['observed_valid']:.3f} "
                f"| {row['error']:+.3f} |"
            )
            if middle is None:
                line += " 0 | - | - | - |"
            else:
                line += (
                    f" {middle['n']} | {middle['mean_probability']:.3f} | {middle['observed_valid']:.3f} "
                    f"| {middle['error']:+.3f} |"
                )
            lines.append(line)
        lines.append("")
    return "\n".join(lines)


def _reliability_line(row: dict[str, Any]) -> str:
    error = row.get("error", row["observed_valid"] - row["mean_probability"])
    spread = 2.0 * row.get("standard_error", 0.0)
    within = "yes" if abs(error) <= 0.05 else "no"
    return (
        f"| {row['bin']} | {row['n']} | {row['mean_probability']:.3f} | {row['observed_valid']:.3f} "
        f"| {error:+.3f} | {spread:.3f} | {within} |"
    )
