"""An outage of a push source (17TRACK, AfterShip) told from an outage of its carriers (pure).

The aggregators push the scans of many carriers. When one stops pushing, every carrier
whose scans come through it goes silent at the same moment while the carriers reached
another way keep scanning: the parcels are moving, only their news is not arriving. Read
as carrier silences, that would price every such parcel as going lost and warn their
sellers for an incident no seller can act on. So carrier health is read per source first:
the carriers behind a source in an outage are not priced as silent (their parcels keep
their probabilities), and the outage is an operator's alert (``VtrPushSourceOutage``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from services.scorer.model import CarrierHealth, ModelSettings

#: Integrations that push the scans of several carriers (services/ingest/carriers).
PUSH_SOURCES: tuple[str, ...] = ("17track", "aftership")

CarrierOrigin = tuple[str, str]


@dataclass(frozen=True)
class SourceRules:
    #: A carrier (per origin) is behind a source when the source brought this share of its recent scans.
    behind_share: float = 0.8
    #: With fewer carriers behind a source, its silence cannot be told from theirs.
    min_carriers: int = 2


@dataclass(frozen=True)
class SourceOutage:
    source: str
    #: The carriers (per origin) behind the source, every one silent.
    carriers: tuple[CarrierOrigin, ...]
    #: Hours since the newest scan of any of them.
    silent_hours: float


def carriers_behind(
    scans_by_source: Mapping[CarrierOrigin, Mapping[str, int]], rules: SourceRules
) -> dict[str, tuple[CarrierOrigin, ...]]:
    """Per push source, the carriers whose recent scans came mostly through it."""
    behind: dict[str, list[CarrierOrigin]] = {source: [] for source in PUSH_SOURCES}
    for carrier, counts in scans_by_source.items():
        total = sum(counts.values())
        for source in PUSH_SOURCES:
            if total and counts.get(source, 0) >= rules.behind_share * total:
                behind[source].append(carrier)
    return {source: tuple(sorted(carriers)) for source, carriers in behind.items()}


def source_outages(
    health: Mapping[CarrierOrigin, CarrierHealth],
    behind: Mapping[str, tuple[CarrierOrigin, ...]],
    settings: ModelSettings,
    rules: SourceRules,
) -> list[SourceOutage]:
    """The push sources in an outage: at least ``min_carriers`` carriers behind it, every
    one silent (carrier health's own rule), their silences begun within
    ``silent_min_hours`` of one another (together, not one by one), while some carrier
    not behind it is heard from."""
    outages = []
    for source, carriers in sorted(behind.items()):
        known = [health[carrier] for carrier in carriers if carrier in health]
        if len(known) < rules.min_carriers or not all(entry.silent(settings) for entry in known):
            continue
        silences = [entry.silent_hours for entry in known]
        if max(silences) - min(silences) > settings.silent_min_hours:
            continue
        others_heard = any(
            not entry.silent(settings) and entry.usual_rate > 0 for key, entry in health.items() if key not in carriers
        )
        if others_heard:
            outages.append(SourceOutage(source, tuple(sorted(carriers)), min(silences)))
    return outages


def mark_source_outages(
    health: Mapping[CarrierOrigin, CarrierHealth], outages: list[SourceOutage]
) -> dict[CarrierOrigin, CarrierHealth]:
    """Carrier health with the carriers behind a source in an outage no longer silent."""
    explained = {carrier: outage.source for outage in outages for carrier in outage.carriers}
    return {
        key: replace(entry, source_outage=explained[key]) if key in explained else entry
        for key, entry in health.items()
    }
