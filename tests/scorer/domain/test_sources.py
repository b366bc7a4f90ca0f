"""A push source's outage told from its carriers' (services/scorer/domain/sources.py; pure)."""

from __future__ import annotations

from services.scorer.domain.sources import (
    SourceRules,
    carriers_behind,
    mark_source_outages,
    source_outages,
)
from services.scorer.model import CarrierHealth, ModelSettings

SETTINGS = ModelSettings()
RULES = SourceRules()
#: 4PX and SFC come through 17TRACK, YunExpress through its own webhook, China Post both ways.
SCANS = {
    ("4px", "CN"): {"17track": 950, "aftership": 10},
    ("sfc", "CN"): {"17track": 400},
    ("yunexpress", "CN"): {"yunexpress": 2000},
    ("china-post", "CN"): {"china-post-ems": 700, "17track": 300},
}


def health(silent: dict[tuple[str, str], float]) -> dict[tuple[str, str], CarrierHealth]:
    """Every carrier of SCANS scanning 3 times an hour, silent for the hours given (else 0.5)."""
    return {key: CarrierHealth(key[0], key[1], silent.get(key, 0.5), 3.0) for key in SCANS}


def test_carriers_behind_a_source_are_those_it_brings_most_scans_of() -> None:
    behind = carriers_behind(SCANS, RULES)
    assert behind == {"17track": (("4px", "CN"), ("sfc", "CN")), "aftership": ()}


def test_every_carrier_of_a_source_silent_together_while_others_scan_is_a_source_outage() -> None:
    found = health({("4px", "CN"): 20.0, ("sfc", "CN"): 18.5})
    [outage] = source_outages(found, carriers_behind(SCANS, RULES), SETTINGS, RULES)
    assert outage.source == "17track" and outage.carriers == (("4px", "CN"), ("sfc", "CN"))
    assert outage.silent_hours == 18.5
    marked = mark_source_outages(found, [outage])
    assert not marked[("4px", "CN")].silent(SETTINGS) and not marked[("sfc", "CN")].silent(SETTINGS)
    assert marked[("4px", "CN")].source_outage == "17track"
    assert marked[("yunexpress", "CN")] == found[("yunexpress", "CN")]


def test_one_carrier_of_a_source_silent_is_that_carrier() -> None:
    found = health({("4px", "CN"): 20.0})
    assert source_outages(found, carriers_behind(SCANS, RULES), SETTINGS, RULES) == []
    assert found[("4px", "CN")].silent(SETTINGS)


def test_silences_that_began_a_day_apart_are_two_carrier_outages() -> None:
    found = health({("4px", "CN"): 40.0, ("sfc", "CN"): 14.0})
    assert source_outages(found, carriers_behind(SCANS, RULES), SETTINGS, RULES) == []


def test_everything_silent_is_not_blamed_on_one_source() -> None:
    found = health({key: 20.0 for key in SCANS})
    assert source_outages(found, carriers_behind(SCANS, RULES), SETTINGS, RULES) == []


def test_a_source_with_a_single_carrier_cannot_be_told_from_it() -> None:
    scans = {("4px", "CN"): {"17track": 100}, ("yunexpress", "CN"): {"yunexpress": 100}}
    found = {
        ("4px", "CN"): CarrierHealth("4px", "CN", 20.0, 3.0),
        ("yunexpress", "CN"): CarrierHealth("yunexpress", "CN", 0.5, 3.0),
    }
    assert source_outages(found, carriers_behind(scans, RULES), SETTINGS, RULES) == []
