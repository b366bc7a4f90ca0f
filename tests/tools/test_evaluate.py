"""``make evaluate`` itself: a family run through the scorer on a real database gives cases
whose counts match the ground truth, and the report's figures add up."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tools.evaluate.families import FAMILIES
from tools.evaluate.report import calibration, figures
from tools.evaluate.run import evaluate_scenario, noon
from tools.simulate.scenario import generate


@pytest.mark.parametrize("order", ["scans-first", "shipments-first"])
async def test_a_carrier_stop_family_is_scored_against_its_truth(order: str, database_url: str) -> None:
    today = datetime.now(UTC).date()
    scenario = generate(FAMILIES["carrier_stop"](7), seed=7, today=today)
    outcome = await evaluate_scenario("carrier_stop", 7, scenario, order, database_url, noon(today))
    assert len(outcome.cases) == len(scenario.seller_categories())
    assert all(case.counts_match for case in outcome.cases), [c for c in outcome.cases if not c.counts_match]
    # Stopped sellers breach within the horizon in this family; the controls do not warn.
    assert any(case.true_lead is not None for case in outcome.cases)
    assert not any(case.warned for case in outcome.cases if case.role == "control" and case.true_lead is None)
    summary = figures(outcome.cases)
    assert summary["cases"] > 0 and summary["counts_match"] == f"{len(outcome.cases)}/{len(outcome.cases)}"
    report = calibration(outcome.packages)
    assert report["n"] == len(outcome.packages) > 0
    assert 0.0 <= report["brier"] < 0.25


async def test_a_pickup_backlog_shared_by_every_seller_of_a_carrier_warns_nobody(database_url: str) -> None:
    """Seed 2 of ``origin_backlog``: 90% of one service's parcels first scanned 3-8 days late
    since 4 days, for six sellers; before the peers were compared, 5 of its 10 healthy
    categories were at AT_RISK."""
    today = datetime.now(UTC).date()
    scenario = generate(FAMILIES["origin_backlog"](2), seed=2, today=today)
    outcome = await evaluate_scenario("origin_backlog", 2, scenario, "scans-first", database_url, noon(today))
    backlogged = [case for case in outcome.cases if case.seller_id.startswith("BACK") and "-OK" not in case.seller_id]
    assert len(backlogged) == 6 and all(case.true_lead is None for case in backlogged)
    assert not [case for case in outcome.cases if case.warned and case.true_lead is None]


def test_calibration_of_a_perfect_and_a_useless_forecast() -> None:
    perfect = calibration([(1.0, True), (0.0, False)] * 10)
    assert perfect["brier"] == 0.0
    useless = calibration([(0.5, True), (0.5, False)] * 10)
    assert useless["brier"] == pytest.approx(0.25)
    assert useless["table"] == [
        {"bin": "0.5-0.6", "n": 20, "mean_probability": 0.5, "observed_valid": 0.5, "error": 0.0,
         "standard_error": pytest.approx(0.5 / 20**0.5)}
    ]  # fmt: skip
    assert [row["error"] for row in perfect["deciles"]] == [0.0] * 10


def test_the_plot_is_written(tmp_path: Path) -> None:
    from tools.evaluate.report import plot_calibration

    table = calibration([(p / 10, p >= 5) for p in range(10)] * 5)["table"]
    plot_calibration(table, tmp_path / "calibration.png", "test")
    assert (tmp_path / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_reliability_split_by_truth_and_stage() -> None:
    from tools.evaluate.report import calibration_split
    from tools.evaluate.run import stage_of

    assert stage_of(None, "awaiting_first_scan") == "unscanned"
    assert stage_of(None, "carrier_silent") == "silent"
    assert stage_of(datetime(2026, 6, 1), "stalled_in_transit") == "silent"
    assert stage_of(datetime(2026, 6, 1), "awaiting_delivery_scan") == "scanned"
    details = [(0.95, True, "healthy/scanned")] * 4 + [(0.5, False, "breaching/unscanned")] * 2
    details += [(0.5, True, "breaching/unscanned")]
    split = calibration_split(details)
    assert set(split) == {
        "healthy/scanned", "healthy/all", "all/scanned", "breaching/unscanned", "breaching/all", "all/unscanned"
    }  # fmt: skip
    assert split["healthy/scanned"]["all"]["error"] == pytest.approx(0.05)
    assert split["healthy/scanned"]["middle"] is None
    breaching = split["breaching/unscanned"]["middle"]
    assert (breaching["n"], breaching["observed_valid"]) == (3, pytest.approx(1 / 3))
