"""What the model is built from, stored as one JSON document per refresh."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.scorer.domain.model.carrier_health import CarrierHealth
from services.scorer.domain.model.correlation import LaneCorrelations
from services.scorer.domain.model.curves import Histogram
from services.scorer.domain.model.lanes import LaneKey, Milestone
from services.scorer.domain.model.observations import InFlight, Observation


@dataclass
class ModelState:
    """What the model is built from, small enough to store as one JSON document: the
    histograms per finest lane and milestone, and the carrier health."""

    histograms: dict[tuple[LaneKey, Milestone], Histogram] = field(default_factory=dict)
    health: dict[tuple[str, str], CarrierHealth] = field(default_factory=dict)
    computed_at: datetime | None = None
    recent_hours: float = 48.0
    #: Packages older than this make the baseline of the first scan's recent cohorts.
    baseline_after_hours: float = 96.0
    #: The recent cohort of scanned parcels per seller's lane (rebuilt at each refresh, not stored).
    in_flight: list[InFlight] = field(default_factory=list)
    #: The correlation of failures per lane, from the matured cohorts (rebuilt at each
    #: refresh, not stored: :func:`services.scorer.storage.cohorts.learn_lane_correlations`).
    correlations: LaneCorrelations = field(default_factory=LaneCorrelations)

    def add(self, observation: Observation) -> None:
        key = (observation.lane, observation.milestone)
        histogram = self.histograms.get(key)
        if histogram is None:
            histogram = self.histograms[key] = Histogram()
        if observation.milestone is not Milestone.FIRST_SCAN:
            # Only the first scan has recent cohorts and a baseline (:meth:`FirstScanChange.dead_share`);
            # the rest need their curves alone: the cheap path.
            histogram.add(
                observation.elapsed_hours,
                observation.reached,
                observation.weight,
                entry_hours=observation.entry_hours,
                fold=observation.fold,
            )
            return
        histogram.add(
            observation.elapsed_hours,
            observation.reached,
            observation.weight,
            baseline=observation.age_hours >= self.baseline_after_hours,
            entry_hours=observation.entry_hours,
        )
        if observation.entry_hours <= 0.0:
            histogram.add_recent(
                observation.elapsed_hours, observation.reached, observation.age_hours, self.recent_hours
            )

    def lanes_only(self) -> ModelState:
        """The same state with every seller's histograms merged into their lane's: what is
        stored (small whatever the number of sellers); seller lanes are rebuilt from the
        packages at each refresh."""
        merged: dict[tuple[LaneKey, Milestone], Histogram] = {}
        for (lane, milestone), histogram in self.histograms.items():
            key = (("", *lane[1:]), milestone)
            target = merged.get(key)  # type: ignore[arg-type]
            if target is None:
                target = merged[key] = Histogram()  # type: ignore[index]
            target.merge(histogram)
        return ModelState(merged, dict(self.health), self.computed_at, self.recent_hours, self.baseline_after_hours)

    def as_json(self) -> dict[str, Any]:
        return {
            "computed_at": self.computed_at.isoformat() if self.computed_at else None,
            "histograms": [
                [list(lane), milestone.value, h.as_json()] for (lane, milestone), h in self.histograms.items()
            ],
            "health": [
                [h.carrier, h.origin, h.silent_hours, h.usual_rate, h.source_outage] for h in self.health.values()
            ],
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ModelState:
        histograms = {
            (tuple(lane), Milestone(milestone)): Histogram.from_json(h)  # type: ignore[misc]
            for lane, milestone, h in value.get("histograms", [])
        }
        health = {
            (carrier, origin): CarrierHealth(carrier, origin, float(hours), float(rate), *outage)
            for carrier, origin, hours, rate, *outage in value.get("health", [])
        }
        computed = value.get("computed_at")
        return cls(histograms, health, datetime.fromisoformat(computed) if computed else None)
