"""When a family's failure began and what kind it is, read from its configuration."""

from __future__ import annotations

from tools.evaluate.families import FAMILIES
from tools.evaluate.visibility import VISIBLE_AFTER_HOURS, onset, visibility_table


def test_every_failing_seller_of_the_failing_families_has_a_known_onset() -> None:
    for family in ("carrier_stop", "delivery_stop", "stalls", "unmapped_carrier", "carrier_outage", "promise_failing"):
        config = FAMILIES[family](1, 12.0)
        for seller in config.sellers:
            if seller.role != "failing":
                continue
            found = onset(config, seller.seller_id, seller.lanes[0].category, 12.0)
            assert found is not None, (family, seller.seller_id)
            kind, hours = found
            assert kind in VISIBLE_AFTER_HOURS and hours >= 0


def test_controls_have_no_onset_and_stalls_are_failures_in_transit() -> None:
    config = FAMILIES["comfortable"](1, 12.0)
    assert all(onset(config, s.seller_id, s.lanes[0].category, 12.0) is None for s in config.sellers)
    stalls = FAMILIES["stalls"](1, 12.0)
    seller = next(s for s in stalls.sellers if s.role == "failing")
    found = onset(stalls, seller.seller_id, seller.lanes[0].category, 12.0)
    assert found is not None and found[0] == "transit"


def test_recall_counts_only_breaching_cases_and_splits_the_visible_ones() -> None:
    config = FAMILIES["stalls"](1, 12.0)
    seller = next(s for s in config.sellers if s.role == "failing")
    case = {"family": "stalls", "seed": 1, "seller_id": seller.seller_id, "category": seller.lanes[0].category,
            "total": 50, "level": "AT_RISK"}  # fmt: skip
    table = visibility_table([{**case, "true_lead": 9}, {**case, "true_lead": None}])
    warned, count, _, visible = table["stalls"]["8-14"]
    assert (warned, count) == (1, 1) and visible in (0, 1)
