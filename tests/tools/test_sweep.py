"""The threshold rule of ``python -m tools.evaluate.sweep``: the lowest breach probability
whose false alarms stay at or under half the target."""

from __future__ import annotations

from tools.evaluate.sweep import RULE_FALSE_ALARMS, THRESHOLDS, chosen, false_alarm_rate


def case(probability: float, lead: int | None, vtr: float = 0.99, total: int = 50) -> dict[str, object]:
    return {"breach_probability": probability, "true_lead": lead, "vtr": vtr, "total": total, "level": "OK"}


def test_the_rule_picks_the_lowest_threshold_with_few_enough_false_alarms() -> None:
    healthy = [case(0.0, None)] * 95 + [case(0.12, None), case(0.12, None), case(0.22, None), case(0.35, None)]
    breaching = [case(0.07, 10), case(0.5, 4)]
    cases = healthy + breaching
    # 0.05 and 0.1: 4 of 99 healthy warned (4.0%); 0.15 and 0.2: 2 (2.0%), under the ceiling.
    assert false_alarm_rate(cases, 0.1) > RULE_FALSE_ALARMS >= false_alarm_rate(cases, 0.15)
    assert chosen(cases) == 0.15


def test_breaching_cases_never_count_as_false_alarms_and_none_may_qualify() -> None:
    assert chosen([case(0.9, 3)] * 10) == THRESHOLDS[0]
    # Every healthy case below 95.5% today is warned whatever the threshold.
    assert chosen([case(0.0, None, vtr=0.95)] * 10) is None
