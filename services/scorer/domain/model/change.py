"""Recent change in the first scans, before the history shows it: the share of a lane's
recent parcels that will never be scanned (beyond chance and beyond what the carrier's
other sellers show: a pickup backlog delays everyone, a stop hits one seller)."""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Callable, Mapping

from services.scorer.domain.model.curves import BOUNDS, BUCKETS, Curve, Histogram
from services.scorer.domain.model.lanes import LaneKey, Milestone, bounded_put, levels
from services.scorer.domain.model.parameters import ModelSettings


def wilson_low(hits: float, count: float, z: float) -> float:
    """The lower end of the Wilson score interval of ``hits`` out of ``count`` (z standard
    deviations): a share that small samples cannot overstate."""
    if count <= 0:
        return 0.0
    share, z2 = hits / count, z * z
    centre = share + z2 / (2.0 * count)
    spread = z * math.sqrt(share * (1.0 - share) / count + z2 / (4.0 * count * count))
    return max(0.0, (centre - spread) / (1.0 + z2 / count))


#: From this many sellers of a carrier with recent parcels, the median peer includes the
#: seller asking (one rank more or less); below it, each seller is left out of its own.
PEERS_SHARED_FROM = 15


def credited_excess(excess: float, spread: float, floor: float, settings: ModelSettings) -> float:
    """The part of a recent cohort's excess (waiting or lost beyond what the history expects,
    ``spread`` its standard deviation by chance alone) credited to a change of the lane.

    With ``change_prior`` 0: the excess beyond ``recent_z`` standard deviations (and beyond
    ``floor``), nothing below. Otherwise a Bayesian change point: the lane changed with prior
    probability ``change_prior``; the evidence for it is the likelihood ratio of the observed
    excess against chance alone, ``exp(z^2 / 2)`` at ``z`` standard deviations; the excess is
    credited with the posterior probability of a change. It moves from the first standard
    deviation on, smoothly, instead of waiting for two: at ``change_prior`` 0.05 a third of
    the excess counts at z = 2 (none before), five sixths at z = 3 (a third before)."""
    if excess <= floor:
        return 0.0
    if settings.change_prior <= 0.0:
        return shrunk_change(excess, max(settings.recent_z * spread, floor), settings.excess_estimate)
    if spread <= 0.0:
        return excess
    z = min(excess / spread, 12.0)
    evidence = settings.change_prior * math.exp(z * z / 2.0)
    return excess * min(1.0, evidence / (evidence + 1.0 - settings.change_prior))


#: The estimates of a change that cleared its guard (``ModelSettings.change_estimate``).
CHANGE_ESTIMATES = ("lower_bound", "garrote")


def shrunk_change(estimate: float, guard: float, kind: str) -> float:
    """The part of ``estimate`` (an excess, or a share) credited when chance alone could
    explain up to ``guard`` of it: 0 up to the guard either way, then ``lower_bound`` the
    part beyond the guard (soft thresholding: with a guard of two standard deviations, a
    change of three is credited a third of itself, one of ten four fifths), or ``garrote``
    the non-negative garrote ``estimate - guard^2 / estimate`` (five ninths and 96%: it
    tends to the whole estimate as the evidence grows, where soft thresholding stays biased
    by the guard). Both are continuous at the guard, so a lane that barely clears it moves little."""
    if estimate <= guard or estimate <= 0.0:
        return 0.0
    if kind == "garrote":
        return estimate - guard * guard / estimate
    if kind == "lower_bound":
        return estimate - guard
    raise ValueError(f"unknown change estimate {kind!r} (one of {CHANGE_ESTIMATES})")


class FirstScanChange:
    """The recent cohorts of the first scan per level, against the lane's older parcels."""

    def __init__(
        self,
        merged: Mapping[tuple[tuple[str, ...], Milestone], Histogram],
        base_curves: Mapping[tuple[str, ...], Curve],
        histograms: Mapping[tuple[LaneKey, Milestone], Histogram],
        settings: ModelSettings,
        silent: Callable[[LaneKey], bool],
    ) -> None:
        self.settings = settings
        self._merged = merged
        self._base_curves = base_curves
        self._silent = silent
        #: Every seller's first-scan histogram per (carrier, origin): the peers a seller's
        #: recent waiting is compared with (:meth:`median_peer`).
        self._first_scans_by_carrier: dict[tuple[str, str], list[tuple[LaneKey, Histogram]]] = defaultdict(list)
        for (lane, milestone), histogram in histograms.items():
            if milestone is Milestone.FIRST_SCAN and lane[0]:
                self._first_scans_by_carrier[(lane[1], lane[3])].append((lane, histogram))
        self._peer_memo: dict[tuple[str, str, int], tuple[list[float], dict[str, float]]] = {}
        #: Bounded memos of the per-lane answers (a model lives for one refresh).
        self._backlog_memo: dict[tuple[str, str, str, int, int], float] = {}
        self._dead_memo: dict[tuple[LaneKey, int], float] = {}

    def dead_share(self, lane: LaneKey, hours: float) -> float:
        """Share of the lane's recent parcels that will never get their first scan beyond what
        its history explains: the packages that passed ``hours`` in the last two days
        and were still waiting then, against the share its long-term curve expects to wait.
        Estimated per level (carrier, lane, seller's lane) and shrunk from general to
        specific, so one seller's stopped parcels show within a day and a carrier that
        stopped for everyone shows for every seller. The first scan's only: after it,
        waiting longer than usual is as much a slower lane as a losing one, and the
        silences between scans tell them apart (:meth:`Model.going_silent`)."""
        boundary = min(BUCKETS, bisect.bisect_left(BOUNDS, max(0.0, hours)))
        found = self._dead_memo.get((lane, boundary))
        if found is not None:
            return found
        peers = self.peer_backlog(lane, BOUNDS[boundary])
        estimate = 0.0
        for level in levels(lane)[1:]:
            histogram = self._merged.get((level, Milestone.FIRST_SCAN))
            curve = self._base_curves.get(level)
            if histogram is None or curve is None:
                continue
            crossed = histogram.crossed[boundary]
            if crossed <= 0:
                continue
            # Waiting that the other sellers of the carrier share is a backlog, not a loss.
            expected = max(curve.survival[boundary], peers)
            # Only the excess beyond chance counts (:func:`credited_excess`).
            spread = math.sqrt(crossed * expected * (1.0 - expected))
            excess = credited_excess(histogram.waiting[boundary] - crossed * expected, spread, 0.0, self.settings)
            raw = 0.0 if expected >= 1.0 else max(0.0, min(1.0, excess / (crossed * (1.0 - expected))))
            weight = self.settings.recent_weight
            estimate = (crossed * raw + weight * estimate) / (crossed + weight)
        bounded_put(self._dead_memo, (lane, boundary), estimate)
        return estimate

    def median_peer(self, carrier: str, origin: str, seller: str, boundary: int) -> float:
        """The share of their recent parcels still waiting for a first scan at ``BOUNDS[boundary]``
        hours, for the median seller other than ``seller`` shipping with the carrier from the origin
        (0 when fewer than ``peer_min_sellers`` have ``peer_min_parcels`` parcels there),
        each seller's share taken at the low end of its confidence interval.

        A pickup backlog at the origin (a holiday, a peak, a warehouse move) delays every
        seller's parcels at once, and the late first scans do come; a carrier that stops
        scanning one seller's parcels, or a seller whose parcels are never handed over,
        leaves the others as they were. Waiting up to what the median peer shows is
        therefore read as a delay, only the excess beyond it as parcels that will never be
        scanned. The median seller, not the mean parcel, so that a big failing peer does
        not hide a seller's own failure. A carrier that stopped scanning new parcels for
        everyone reads as a backlog here; its parcels still lose probability as they grow
        overdue against the lane's curve, and a carrier that sends nothing at all is caught
        by its health."""
        shares, by_seller = self._peer_shares(carrier, origin, boundary)
        own = by_seller.get(seller)
        count = len(shares) - (own is not None)
        if count < self.settings.peer_min_sellers:
            return 0.0
        # The median of the others: the sorted shares without this seller's own.
        middle = count // 2
        if own is not None and bisect.bisect_left(shares, own) <= middle:
            middle += 1
        return shares[middle]

    def _peer_shares(self, carrier: str, origin: str, boundary: int) -> tuple[list[float], dict[str, float]]:
        """Every seller's waiting share at the boundary (Wilson low end), sorted, and by seller:
        computed once per carrier, origin and boundary, then shared by all its sellers."""
        key = (carrier, origin, boundary)
        found = self._peer_memo.get(key)
        if found is None:
            per_seller: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
            for peer_lane, histogram in self._first_scans_by_carrier.get((carrier, origin), ()):
                totals = per_seller[peer_lane[0]]
                totals[0] += histogram.waiting[boundary]
                totals[1] += histogram.crossed[boundary]
            # Each seller's share at the low end of its confidence interval (a seller with 1
            # parcel of 7 waiting says little), then one vote per seller: one big failing
            # seller cannot make a backlog.
            by_seller = {
                seller: wilson_low(waiting, crossed, self.settings.recent_z)
                for seller, (waiting, crossed) in per_seller.items()
                if crossed >= self.settings.peer_min_parcels
            }
            found = self._peer_memo[key] = (sorted(by_seller.values()), by_seller)
        return found

    def backlog_factor(self, lane: LaneKey, elapsed_hours: float, curve: Curve) -> float:
        """How much likelier an unscanned parcel this old is to be scanned after all when
        the carrier's other sellers show a pickup backlog (:meth:`median_peer`).

        The curve alone says: of the parcels still waiting after ``elapsed_hours``
        (``curve.at``), the share ``never`` of all parcels will never be scanned, so a
        waiting parcel is dead with probability never / waiting. A backlog makes both
        numbers wrong: the lane's own recent parcels, still waiting, flatten its curve
        and inflate ``never``. When the median peer has more of its parcels waiting at
        that age than the lane's history (the curve of its older parcels) ever had, the
        parcels that will never be scanned are the history's share among those delayed:
        never (history) / waiting (peers). The factor turns the curve's answer into that
        one, keeping the curve's timing of the late scans; it is 1 without a backlog."""
        baseline = self.base_curve(lane)
        shared = self.peer_backlog(lane, elapsed_hours)
        if baseline is None or shared <= baseline.at(elapsed_hours):
            return 1.0
        waiting, never = curve.at(elapsed_hours), curve.survival[BUCKETS]
        alive_by_curve = 1.0 - never / waiting if waiting > never else 0.0
        alive_in_backlog = 1.0 - min(1.0, baseline.survival[BUCKETS] / shared)
        if alive_by_curve <= 1e-6:
            return 1.0
        return max(1.0, alive_in_backlog / alive_by_curve)

    def peer_backlog(self, lane: LaneKey, hours: float) -> float:
        """The share of the lane's parcels that would still wait for a first scan at
        ``hours`` if the backlog the carrier's other sellers show (:meth:`median_peer`)
        hits it too (0 without a backlog).

        At each age the peers' parcels passed lately, the backlog is the share of them
        waiting beyond what the carrier's history (its older parcels' curve) expects:
        delayed = (peers' waiting - history's) / (1 - history's), then applied to the
        lane's own history. The largest over the ages from ``recent_hours`` younger than
        ``hours`` up to ``hours`` counts: a parcel this old was confirmed when the peers'
        parcels that are now that much younger were, so a backlog that began since shows
        in them before any peer parcel is this old. Only ages by which the history has
        most parcels scanned tell (younger ones wait anyway). Never while the carrier is
        silent: a backlog is a carrier that scans, only late."""
        carrier, origin = lane[1], lane[3]
        history = self._base_curves.get(("carrier", carrier, origin))
        baseline = self.base_curve(lane)
        if history is None or baseline is None or self._silent(lane):
            return 0.0
        last = min(BUCKETS, bisect.bisect_left(BOUNDS, max(0.0, hours)))
        first = min(last, bisect.bisect_left(BOUNDS, max(0.0, hours - self.settings.recent_hours)))
        # Among many sellers one more or less barely moves the median: then every seller
        # shares one answer per carrier (the scorer asks for every unscanned package).
        sellers = len(self._peer_shares(carrier, origin, last)[0])
        excluded = lane[0] if sellers < PEERS_SHARED_FROM else ""
        key = (carrier, origin, excluded, first, last)
        delayed = self._backlog_memo.get(key)
        if delayed is None:
            delayed = 0.0
            for boundary in range(first, last + 1):
                usual = history.survival[boundary]
                if usual < 0.5:
                    peers = self.median_peer(carrier, origin, excluded, boundary)
                    delayed = max(delayed, (peers - usual) / (1.0 - usual))
            bounded_put(self._backlog_memo, key, delayed)
        if delayed <= 0.0:
            return 0.0
        usual = baseline.at(hours)
        return usual + delayed * (1.0 - usual)

    def base_curve(self, lane: LaneKey) -> Curve | None:
        """The most specific first-scan curve of the lane's older parcels (its history)."""
        for level in reversed(levels(lane)):
            found = self._base_curves.get(level)
            if found is not None:
                return found
        return None
