"""The share of a recent cohort of scanned parcels that went silent for good, as a mixture:
each parcel is either on its way (its silence as long as the lane's gaps allow) or lost
(silent for ever), and the lost share is the one that makes the cohort's silences likeliest.

Pure arithmetic on what each parcel says (:class:`CohortParcel`, or a whole cohort as
columns: :class:`Cohort`); the model (``Model._silent_shares``) builds the cohorts and
shrinks the shares from general to specific."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

#: Steps of the bisections: the share is a probability, 40 halvings settle it far below
#: what it is used for.
BISECTION_STEPS = 40


@dataclass(frozen=True, slots=True)
class CohortParcel:
    """One parcel of the cohort: its recency weight; whether it got its delivery scan;
    the prior chance it is on its way (the lane's history, before its silence); and the
    chance that a parcel on its way is silent as long as it is (the stage's gap curve)."""

    weight: float
    delivered: bool
    prior_alive: float
    shown: float
    #: It left the transit stage (it was scanned at its destination): it came through a
    #: stage in which it could have been lost, which is as much evidence against a loss
    #: as its current silence may be for one.
    passed: bool = False


Floats = npt.NDArray[np.float64]
Flags = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Cohort:
    """A cohort as columns, one entry per parcel (the fields of :class:`CohortParcel`): the
    shares below sum over tens of thousands of parcels, dozens of times per bisection."""

    weight: Floats
    delivered: Flags
    prior_alive: Floats
    shown: Floats
    passed: Flags

    @classmethod
    def of(cls, parcels: Sequence[CohortParcel] | Cohort) -> Cohort:
        if isinstance(parcels, Cohort):
            return parcels
        return cls(
            np.array([parcel.weight for parcel in parcels], dtype=np.float64),
            np.array([parcel.delivered for parcel in parcels], dtype=np.bool_),
            np.array([parcel.prior_alive for parcel in parcels], dtype=np.float64),
            np.array([parcel.shown for parcel in parcels], dtype=np.float64),
            np.array([parcel.passed for parcel in parcels], dtype=np.bool_),
        )

    @classmethod
    def joined(cls, parts: Sequence[Cohort]) -> Cohort:
        """The parts one after the other."""
        if len(parts) == 1:
            return parts[0]
        return cls(
            np.concatenate([part.weight for part in parts]),
            np.concatenate([part.delivered for part in parts]),
            np.concatenate([part.prior_alive for part in parts]),
            np.concatenate([part.shown for part in parts]),
            np.concatenate([part.passed for part in parts]),
        )

    def __len__(self) -> int:
        return len(self.weight)

    def __iter__(self) -> Iterator[CohortParcel]:
        for values in zip(
            self.weight.tolist(),
            self.delivered.tolist(),
            self.prior_alive.tolist(),
            self.shown.tolist(),
            self.passed.tolist(),
            strict=True,
        ):
            yield CohortParcel(*values)

    def guarded(self, shared: float) -> Cohort:
        """The cohort with ``shared`` of each parcel's prior chance of being on its way
        counted as lost already (the share its peers show too)."""
        return replace(self, prior_alive=self.prior_alive * (1.0 - shared))


def _log_likelihood(parcels: Sequence[CohortParcel] | Cohort, share: float) -> float:
    """Weighted log-likelihood of the cohort when ``share`` of it is lost beyond its history.
    A delivered parcel was not lost (``1 - share``), nor was one scanned at its destination
    lost in transit (``1 - share`` again); a waiting one is either alive and silent this
    long, or lost (always silent). Without that second term, every parcel's ordinary
    silence would count a little for a loss (a lost parcel is silent whatever the time):
    a young cohort on a long lane, none of it delivered yet, read as half lost."""
    cohort = Cohort.of(parcels)
    kept = max(1e-12, 1.0 - share)
    through = cohort.delivered | cohort.passed
    waiting = ~cohort.delivered
    alive = cohort.prior_alive[waiting] * kept
    observed = np.maximum(1e-300, alive * cohort.shown[waiting] + 1.0 - alive)
    return float(np.sum(cohort.weight[through]) * math.log(kept) + np.sum(cohort.weight[waiting] * np.log(observed)))


def _baseline(parcels: Sequence[CohortParcel] | Cohort) -> float:
    """Log-likelihood with no loss beyond the history (``share`` 0)."""
    return _log_likelihood(parcels, 0.0)


@dataclass(frozen=True)
class _Slope:
    """Derivative of :func:`_log_likelihood` in ``share``, its per-parcel parts taken once
    for the whole bisection."""

    through: float
    prior_alive: Floats
    shown: Floats
    #: Per waiting parcel, its weight times its chance of being on its way yet unseen.
    unseen: Floats

    @classmethod
    def of(cls, cohort: Cohort) -> _Slope:
        waiting = ~cohort.delivered
        prior_alive = cohort.prior_alive[waiting]
        return cls(
            float(np.sum(cohort.weight[cohort.delivered | cohort.passed])),
            prior_alive,
            cohort.shown[waiting],
            cohort.weight[waiting] * prior_alive * (1.0 - cohort.shown[waiting]),
        )

    def at(self, share: float) -> float:
        kept = max(1e-12, 1.0 - share)
        alive = self.prior_alive * kept
        observed = np.maximum(1e-300, alive * self.shown + 1.0 - alive)
        return float(np.sum(self.unseen / observed)) - self.through / kept


def likeliest_share(parcels: Sequence[CohortParcel] | Cohort) -> float:
    """The lost share beyond the history that makes the cohort likeliest. The
    log-likelihood is a sum of logs of functions linear in the share, so concave: its
    maximum is where its slope crosses 0 (bisection), or 0 when it falls from the start."""
    slope = _Slope.of(Cohort.of(parcels))
    if slope.at(0.0) <= 0.0:
        return 0.0
    low, high = 0.0, 1.0 - 1e-9
    if slope.at(high) >= 0.0:
        return high
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2.0
        if slope.at(middle) > 0.0:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


def credible_share(parcels: Sequence[CohortParcel] | Cohort, z: float, estimate: str = "lower_bound") -> float:
    """The lost share beyond the history that the cohort shows beyond chance, 0 when no loss
    beyond the history is itself within ``z`` standard deviations of the likeliest share
    (``2 (l(best) - l(0)) <= z^2``): small cohorts rarely clear it. Beyond, ``estimate``
    says how much of the likeliest share counts (:func:`services.scorer.domain.model.change.shrunk_change`):
    ``lower_bound`` the lowest share still within ``z`` standard deviations of it (the lower
    end of its likelihood interval: ``2 (l(best) - l(share)) = z^2``); ``garrote`` the
    likeliest share times ``1 - z^2 / Z^2``, ``Z^2 = 2 (l(best) - l(0))`` being the evidence
    against no loss (the garrote on the share's scale: with a quadratic likelihood, the
    guard is ``z`` standard errors, ``best z / Z``)."""
    cohort = Cohort.of(parcels)
    best = likeliest_share(cohort)
    if best <= 0.0:
        return 0.0
    top = _log_likelihood(cohort, best)
    evidence = 2.0 * (top - _baseline(cohort))
    if evidence <= z * z:
        return 0.0
    if estimate == "garrote":
        return best * (1.0 - z * z / evidence)
    low, high = 0.0, best
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2.0
        if 2.0 * (top - _log_likelihood(cohort, middle)) > z * z:
            low = middle
        else:
            high = middle
    return high


def by_stage(parcels: Sequence[CohortParcel] | Cohort) -> tuple[Cohort, Cohort]:
    """The cohort read twice, once for each place a parcel can be lost: in transit, and
    after it (at its destination or out for delivery: a last mile that stopped scanning
    deliveries). A parcel scanned at its destination came through the transit stage (it
    counts there as a delivered one does) and, silent since, speaks for a loss after it;
    a parcel still in transit says nothing yet about what comes after. Each share is then
    a mixture of the same form (:func:`likeliest_share`), and a parcel is lost with
    ``1 - (1 - transit)(1 - after)``. Read as one share with the parcels past transit as
    evidence against it (``passed``), a last mile that stopped read as at most half its
    size: each of its silent parcels counted once for a loss and once against it."""
    cohort = Cohort.of(parcels)
    came_through = cohort.passed & ~cohort.delivered
    through = cohort.delivered | cohort.passed
    unpassed = np.zeros(len(cohort), dtype=np.bool_)
    # In transit, a parcel that came through it counts like a delivered one.
    transit = Cohort(
        cohort.weight,
        through,
        np.where(came_through, 1.0, cohort.prior_alive),
        np.where(came_through, 0.0, cohort.shown),
        unpassed,
    )
    after = Cohort(
        cohort.weight[through],
        cohort.delivered[through],
        cohort.prior_alive[through],
        cohort.shown[through],
        unpassed[through],
    )
    return transit, after


def combined(transit: float, after: float) -> float:
    """The share lost in either place (:func:`by_stage`)."""
    return 1.0 - (1.0 - transit) * (1.0 - after)


def peer_silent_shares(
    cohorts: Mapping[tuple[str, ...], Sequence[CohortParcel] | Cohort], min_parcels: float, staged: bool = False
) -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    """Per carrier and origin, each seller's likeliest going-silent share over its cohort
    there (its lanes pooled), for the sellers with at least ``min_parcels`` parcels in it:
    what a seller's own share is compared with (``Model._seller_silent_share``). Each as
    (lost in transit, lost after it) when ``staged`` (:func:`by_stage`), else (the one
    share, 0)."""
    pooled: dict[tuple[str, str, str], list[Cohort]] = defaultdict(list)
    for level, parcels in cohorts.items():
        if level[0] == "seller":
            _, seller, carrier, _, origin, _ = level
            pooled[(carrier, origin, seller)].append(Cohort.of(parcels))
    found: dict[tuple[str, str], dict[str, tuple[float, float]]] = defaultdict(dict)
    for (carrier, origin, seller), parts in pooled.items():
        parcels = Cohort.joined(parts)
        if len(parcels) >= min_parcels:
            if staged:
                transit, after = by_stage(parcels)
                found[(carrier, origin)][seller] = (likeliest_share(transit), likeliest_share(after))
            else:
                found[(carrier, origin)][seller] = (likeliest_share(parcels), 0.0)
    return dict(found)
