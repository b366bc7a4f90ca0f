"""The score types."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from services.scorer.forecast import DayCounts
from shared.schemas import (
    CarrierHealthNote,
)


@dataclass
class ScopeCounts:
    days: dict[date, DayCounts]
    #: Invalid packages of the window by reason.
    reasons: dict[str, int]
    #: Pending packages promised from the evaluation day on, by reason.
    pending_reasons: dict[str, int] = field(default_factory=dict)
    #: Silent carriers behind those pending packages (filled by the service).
    carrier_health: tuple[CarrierHealthNote, ...] = ()
