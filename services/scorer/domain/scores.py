"""The score types: a seller-category's counters as read, and its score with its level,
as the API answers it and the publisher sends it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from fractions import Fraction
from typing import Any

import msgspec

from services.scorer.domain.forecast import DayCounts, Score, score
from services.scorer.domain.levels import LevelThresholds, capped_level, level_of, today_level
from shared.schemas import CarrierHealthNote, ForecastPoint, Level, ModelNote, ScoreSnapshot


@dataclass
class ScopeCounts:
    days: dict[date, DayCounts]
    #: Invalid packages of the window by reason.
    reasons: dict[str, int]
    #: Pending packages promised from the evaluation day on, by reason.
    pending_reasons: dict[str, int] = field(default_factory=dict)
    #: Silent carriers behind those pending packages (filled by the scoring).
    carrier_health: tuple[CarrierHealthNote, ...] = ()


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


@dataclass(frozen=True)
class CategoryScore:
    marketplace: str
    category: str
    score: Score
    level: Level
    #: Silent carriers behind this category's pending packages (across all sellers).
    carrier_health: tuple[CarrierHealthNote, ...] = ()
    #: The model that priced its pending packages, and whether it had learnt their lanes.
    model: ModelNote | None = None

    def as_json(self) -> dict[str, Any]:
        s = self.score
        return {
            "marketplace": self.marketplace,
            "category": self.category,
            "window_from": s.window.first.isoformat(),
            "window_to": s.window.last.isoformat(),
            "total": s.total,
            "valid": s.valid,
            "invalid": s.invalid,
            "pending": s.pending,
            "vtr": rounded(s.vtr),
            "headroom": s.headroom,
            "forecast": [
                {
                    "date": p.day.isoformat(),
                    "vtr": rounded(p.vtr),
                    "p10": rounded(p.p10),
                    "p50": rounded(p.p50),
                    "p90": rounded(p.p90),
                    "breach_probability": rounded(p.breach_probability),
                }
                for p in s.forecast
            ],
            "days_to_breach": s.days_to_breach,
            "breach_probability": rounded(s.breach_probability),
            "level": self.level.value,
            "reasons": dict(sorted(s.reasons.items())),
            "pending_reasons": dict(sorted(s.pending_reasons.items())),
            "carrier_health": [msgspec.to_builtins(note) for note in self.carrier_health],
            "model": msgspec.to_builtins(self.model) if self.model is not None else None,
        }

    def snapshot(self, seller_id: str, as_of: date, caught_up: bool) -> ScoreSnapshot:
        s = self.score
        return ScoreSnapshot(
            seller_id=seller_id,
            marketplace=self.marketplace,
            category=self.category,
            as_of=as_of,
            computed_at=datetime.now(UTC),
            caught_up=caught_up,
            window_from=s.window.first,
            window_to=s.window.last,
            total=s.total,
            valid=s.valid,
            invalid=s.invalid,
            pending=s.pending,
            vtr=rounded(s.vtr),
            headroom=s.headroom,
            forecast=tuple(
                ForecastPoint(
                    p.day,
                    rounded(p.vtr),
                    rounded(p.p10),
                    rounded(p.p50),
                    rounded(p.p90),
                    rounded(p.breach_probability),
                )
                for p in s.forecast
            ),
            days_to_breach=s.days_to_breach,
            level=self.level,
            reasons=dict(sorted(s.reasons.items())),
            breach_probability=rounded(s.breach_probability),
            pending_reasons=dict(sorted(s.pending_reasons.items())),
            carrier_health=self.carrier_health,
            model=self.model,
        )


@dataclass(frozen=True)
class ScoreRules:
    """What turns a seller-category's counters into its score and level (from the settings)."""

    lag_days: int
    floor: Fraction
    correlation: float
    thresholds: LevelThresholds

    def category_score(
        self,
        marketplace: str,
        category: str,
        counts: ScopeCounts,
        as_of: date,
        model: ModelNote | None = None,
        correlation: float | None = None,
    ) -> CategoryScore:
        """The score and its level; while ``model`` says the category's lanes are not learnt,
        the level is capped (domain/levels.py ``capped_level``). ``correlation`` is the
        category's learnt correlation of failures (``ModelState.correlations``); without it,
        the setting's."""
        result = score(
            counts.days,
            as_of,
            lag_days=self.lag_days,
            floor=self.floor,
            reasons=counts.reasons,
            pending_reasons=counts.pending_reasons,
            correlation=self.correlation if correlation is None else correlation,
        )
        level = level_of(result, self.thresholds)
        if model is not None:
            today = today_level(result, self.thresholds)
            level = capped_level(level, today, model.lanes_learnt)
            model = msgspec.structs.replace(model, today_level=today)
        return CategoryScore(marketplace, category, result, level, counts.carrier_health, model)

    def empty_score(self, marketplace: str, category: str, as_of: date) -> CategoryScore:
        return self.category_score(marketplace, category, ScopeCounts({}, {}), as_of)
