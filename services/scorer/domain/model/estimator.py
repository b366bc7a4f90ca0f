"""The model: shrunk curves per lane and milestone, the delivery clock each lane follows,
the silences between scans, and each pending package's probability of valid tracking in
time with the reason a seller reads."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from services.scorer.domain.model.carrier_health import CarrierHealth
from services.scorer.domain.model.change import FirstScanChange, credited_excess
from services.scorer.domain.model.curves import (
    BOUNDS,
    BUCKETS,
    CHANGE_PROBES,
    GAP_PRIOR_SHARE,
    Curve,
    Histogram,
    promise_prior,
    shrink,
)
from services.scorer.domain.model.lanes import (
    DEFAULT_CLOCK,
    GAP_MILESTONES,
    PROMISE_OFFSET,
    SILENCE_MASKS,
    STAGE_OF_SCAN,
    LaneKey,
    Milestone,
    bounded_put,
    levels,
    parent_level,
    promise_clock,
)
from services.scorer.domain.model.observations import InFlight, halving_many, hours_of, in_silence_cohort
from services.scorer.domain.model.parameters import ModelSettings
from services.scorer.domain.model.silent_share import (
    Cohort,
    Floats,
    by_stage,
    combined,
    credible_share,
    peer_silent_shares,
)
from services.scorer.domain.model.state import ModelState
from shared.schemas import Reason


class Model:
    """Shrunk curves per lane and milestone, ready for :meth:`estimate`."""

    def __init__(self, state: ModelState, settings: ModelSettings) -> None:
        self.state = state
        self.settings = settings
        self._curves: dict[tuple[tuple[str, ...], Milestone], Curve] = {}
        #: The first scan's curves from the older packages only (:meth:`FirstScanChange.dead_share`).
        self._base_curves: dict[tuple[str, ...], Curve] = {}
        self._memo: dict[tuple[Any, ...], float] = {}
        priors = {
            Milestone.FIRST_SCAN: Curve.prior(settings.prior_first_scan_days, settings.prior_first_scan_share),
            Milestone.DELIVERY: Curve.prior(settings.prior_delivery_days, settings.prior_delivery_share, 4),
            Milestone.DELIVERY_BY_PROMISE: promise_prior(settings),
            Milestone.GAP_TRANSIT: Curve.prior(settings.prior_gap_transit_days, GAP_PRIOR_SHARE),
            Milestone.GAP_DESTINATION: Curve.prior(settings.prior_gap_destination_days, GAP_PRIOR_SHARE),
            Milestone.GAP_LAST_MILE: Curve.prior(settings.prior_gap_last_mile_days, GAP_PRIOR_SHARE),
        }
        merged: dict[tuple[tuple[str, ...], Milestone], Histogram] = defaultdict(Histogram)
        for (lane, milestone), histogram in state.histograms.items():
            for level in levels(lane):
                merged[(level, milestone)].merge(histogram)
        # Parents before children: keys sorted by depth.
        for level_key, milestone in sorted(merged, key=lambda key: len(key[0])):
            parent_key = parent_level(level_key)
            parent = priors[milestone] if parent_key is None else self._curves[(parent_key, milestone)]
            self._curves[(level_key, milestone)] = shrink(
                merged[(level_key, milestone)], parent, settings.shrinkage_weight
            )
            if milestone is Milestone.FIRST_SCAN:
                base_parent = priors[milestone] if parent_key is None else self._base_curves[parent_key]
                self._base_curves[level_key] = shrink(
                    merged[(level_key, milestone)].baseline(), base_parent, settings.shrinkage_weight
                )
        self._priors = priors
        self._merged = dict(merged)
        self.change = FirstScanChange(merged, self._base_curves, state.histograms, settings, self._silent)
        self._usual: dict[tuple[LaneKey, Milestone, float], float] = {}
        self._clocks = self._delivery_clocks(merged)
        self._going_silent = self._silent_shares(state.in_flight)

    def _delivery_clocks(
        self, merged: Mapping[tuple[tuple[str, ...], Milestone], Histogram]
    ) -> dict[tuple[str, ...], Milestone]:
        """Per level (everyone, carrier, lane): the delivery clock whose curve, learnt from one
        half of the level's packages, predicts the other half better (and the other way
        round), once the level has ``clock_min_deliveries`` deliveries; else its parent's.
        Where each parcel's transit follows its promise, the promise clock wins; where
        transit does not depend on the promise, the clock from the first scan does."""
        clocks: dict[tuple[str, ...], Milestone] = {}
        weight = self.settings.shrinkage_weight
        for level_key, milestone in sorted(merged, key=lambda key: len(key[0])):
            if milestone is not Milestone.DELIVERY or level_key[0] == "seller":
                continue
            parent_key = parent_level(level_key)
            inherited = clocks.get(parent_key, DEFAULT_CLOCK) if parent_key is not None else DEFAULT_CLOCK
            by_promise = merged.get((level_key, Milestone.DELIVERY_BY_PROMISE))
            absolute = merged[(level_key, milestone)]
            if by_promise is None:
                # No promises known (older state): the clock from the first scan.
                clocks[level_key] = Milestone.DELIVERY
                continue
            if sum(absolute.events) < self.settings.clock_min_deliveries:
                clocks[level_key] = inherited
                continue
            likelihoods = {
                clock: histogram.held_out_log_likelihood(self._parent_curve(level_key, clock), weight)
                for clock, histogram in ((milestone, absolute), (Milestone.DELIVERY_BY_PROMISE, by_promise))
            }
            clocks[level_key] = max(likelihoods, key=lambda clock: likelihoods[clock])
        return clocks

    def _parent_curve(self, level_key: tuple[str, ...], milestone: Milestone) -> Curve:
        parent_key = parent_level(level_key)
        return self._priors[milestone] if parent_key is None else self._curves[(parent_key, milestone)]

    def delivery_clock(self, lane: LaneKey) -> Milestone:
        """The clock the lane's deliveries are timed on (see :meth:`_delivery_clocks`)."""
        for level in reversed(levels(lane)[:-1]):
            found = self._clocks.get(level)
            if found is not None:
                return found
        return DEFAULT_CLOCK

    def delivery_position(self, lane: LaneKey, elapsed_hours: float, until_hours: float) -> tuple[float, float, float]:
        """For a parcel first scanned ``elapsed_hours`` ago whose deadline is ``until_hours``
        after its first scan, on the lane's delivery clock: the share of such parcels still
        waiting now (since the first scan), the share that will be delivered by the deadline
        given it is still waiting, and the share of those delivered by the deadline that
        were delivered by now. A promise shorter than the lane's fastest transits
        (``fast_share`` of its deliveries from the first scan) is timed from the first scan:
        no promise makes a parcel faster than the lane's fastest ones."""
        if self.delivery_clock(lane) is Milestone.DELIVERY or until_hours < self.fastest_hours(lane):
            curve = self.curve(lane, Milestone.DELIVERY)
            return curve.at(elapsed_hours), curve.reach_by(elapsed_hours, until_hours), curve.share_by(elapsed_hours)
        curve = self.curve(lane, Milestone.DELIVERY_BY_PROMISE)
        entered, now = promise_clock(until_hours), promise_clock(until_hours - elapsed_hours)
        start = curve.at(entered)
        if start <= 1e-12:
            return 0.0, 0.0, 1.0
        waiting = curve.at(now) / start
        by_deadline = 1.0 - curve.at(PROMISE_OFFSET) / start
        done = (1.0 - waiting) / by_deadline if by_deadline > 1e-9 else 1.0
        reach = curve.reach_by(now, PROMISE_OFFSET) if until_hours > elapsed_hours else 0.0
        return waiting, reach, min(1.0, done)

    def usual_hours(self, lane: LaneKey, milestone: Milestone, share: float | None = None) -> float:
        """Hours by which ``share`` (by default ``usual_share``) of the lane's parcels that ever
        reach the milestone have reached it: the age at which a recent cohort first shows a
        change."""
        wanted = self.settings.usual_share if share is None else share
        key = (lane, milestone, wanted)
        found = self._usual.get(key)
        if found is None:
            curve = self.curve(lane, milestone)
            found = next((hours for hours in BOUNDS if curve.share_by(hours) >= wanted), BOUNDS[-1])
            self._usual[key] = found
        return found

    def fastest_hours(self, lane: LaneKey) -> float:
        """Hours from the first scan by which the lane's fastest ``fast_share`` of deliveries came."""
        return self.usual_hours(lane, Milestone.DELIVERY, self.settings.fast_share)

    def silence_survival(self, lane: LaneKey, stage: Milestone, silent_hours: float) -> float:
        """Share of the lane's parcels that are still on their way but stay silent this long
        after a scan of ``stage``: the gap curve, conditional on the next scan coming."""
        curve = self.curve(lane, stage)
        never = curve.survival[BUCKETS]
        if never >= 1.0 - 1e-6:
            return 1.0
        return max(0.0, min(1.0, (curve.at(silent_hours) - never) / (1.0 - never)))

    def lost_given_silence(
        self,
        lane: LaneKey,
        elapsed_hours: float,
        stage: Milestone | None,
        silent_hours: float,
        alive: float = 1.0,
        until_hours: float | None = None,
    ) -> tuple[float, float]:
        """For a scanned parcel without a delivery scan ``elapsed_hours`` after its first scan
        (its deadline ``until_hours`` after it): (probability it will still get one at all,
        before its silence is considered; the factor its silence multiplies its probability
        by). Bayes: a parcel on its way shows this silence as often as the lane's gaps
        allow, a lost one always. Parcels like it still waiting at its age are counted on
        the lane's delivery clock: on the promise's, a parcel with a far promise is not
        late for being older than the lane's usual transit."""
        never = self.curve(lane, Milestone.DELIVERY).survival[BUCKETS]
        waiting = self._waiting(lane, elapsed_hours, until_hours)
        ever = max(0.0, waiting - never) / waiting if waiting > 1e-12 else 0.0
        prior_alive = min(1.0 - self.settings.silence_min_dead, max(0.0, ever * alive))
        if stage is None:
            return prior_alive, 1.0
        shown = self.silence_survival(lane, stage, silent_hours)
        posterior = prior_alive * shown + (1.0 - prior_alive)
        return prior_alive, (shown / posterior if posterior > 0 else 0.0)

    def _waiting(self, lane: LaneKey, elapsed_hours: float, until_hours: float | None) -> float:
        if until_hours is None:
            return self.curve(lane, Milestone.DELIVERY).at(elapsed_hours)
        return self.delivery_position(lane, elapsed_hours, until_hours)[0]

    def parcel_silence(self, lane: LaneKey, hours_since_last_scan: float) -> float:
        """How long a parcel has been silent while its carrier was scanning others: the hours
        since its last scan, less the hours since its carrier's newest scan from that origin.
        When no scan arrives at all (the carrier, or the webhook that brings its scans, is
        down), carrier health speaks for every parcel at once (``carrier_silent``); a
        parcel's own silence only counts while the others are heard from."""
        health = self.health(lane[1], lane[3])
        return max(0.0, hours_since_last_scan - (health.silent_hours if health is not None else 0.0))

    def going_silent(self, lane: LaneKey) -> float:
        """Share of the lane's recent scanned parcels that went silent for good, beyond what
        its history explains (see :meth:`_silent_shares`)."""
        for level in reversed(levels(lane)[1:]):
            found = self._going_silent.get(level)
            if found is not None:
                return found
        return 0.0

    def _silent_shares(self, in_flight: Iterable[InFlight]) -> dict[tuple[str, ...], float]:
        """Per level (carrier, lane, seller's lane): the share of the recent scanned parcels
        that went silent for good, beyond what the lane's history explains.

        Each parcel of the cohort (first scan 4-10 days ago, the newest weighing most)
        counts with its probability of being lost given its own record (not delivered at
        its age, silent this long in its stage: :meth:`lost_given_silence`), against the
        same probability without its silence. The excess beyond ``recent_z`` standard
        errors is shrunk from general to specific, as :meth:`FirstScanChange.dead_share` does: a stall
        shows here about as soon as the stalled parcels are silent longer than their stage
        allows, days before they are overdue against the whole transit time. Parcels lost
        too recently to be silent long yet are not seen: the estimate lags a new stall by
        the lane's longest usual silence."""
        settings = self.settings
        by_lane: dict[LaneKey, list[InFlight]] = defaultdict(list)
        for parcel in in_flight:
            if in_silence_cohort(parcel.age_hours, settings):
                by_lane[parcel.lane].append(parcel)
        sums: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0.0] * 6)
        parts: dict[tuple[str, ...], list[Cohort]] = defaultdict(list)
        # Lane by lane, each lane's parcels at once: the same arithmetic as
        # lost_given_silence and silence_survival, on columns.
        for lane, parcels in by_lane.items():
            member, lost, unsilenced = self._lane_cohort(lane, parcels)
            weight = member.weight
            lane_sums = (
                float(len(parcels)),
                float(np.sum(weight)),
                float(np.sum(weight * weight)),
                float(np.sum(weight * (lost - unsilenced))),
                float(np.sum(weight * unsilenced)),
                float(np.sum(weight * weight * unsilenced * (1.0 - unsilenced))),
            )
            for level in levels(lane)[1:]:
                totals = sums[level]
                for index, value in enumerate(lane_sums):
                    totals[index] += value
                parts[level].append(member)
        cohorts = {level: Cohort.joined(pieces) for level, pieces in parts.items()}
        peers = (
            peer_silent_shares(cohorts, settings.peer_min_parcels, settings.silence_loss_stages)
            if settings.silence_share_mixture
            else {}
        )
        shares: dict[tuple[str, ...], float] = {}
        for level, (count, total, squares, excess, expected, variance) in sorted(
            sums.items(), key=lambda item: len(item[0])
        ):
            parent_key = parent_level(level)
            parent = shares.get(parent_key, 0.0) if parent_key is not None else 0.0
            usual = expected / total
            # Chance alone (z standard deviations of the weighted count), and never less than
            # one parcel: one stalled parcel of two is no trend.
            credited = credited_excess(excess, math.sqrt(variance), total / count, settings)
            raw = max(0.0, min(1.0, credited / total / (1.0 - usual))) if usual < 1.0 else 0.0
            if settings.silence_share_mixture and level[0] == "seller":
                raw = max(raw, self._seller_silent_share(level, cohorts, peers))
            effective = total * total / squares
            shares[level] = (effective * raw + settings.recent_weight * parent) / (effective + settings.recent_weight)
        return shares

    def _lane_cohort(self, lane: LaneKey, parcels: list[InFlight]) -> tuple[Cohort, Floats, Floats]:
        """One lane's parcels of the cohort (see :meth:`_silent_shares`), each with its
        probability of being lost given its record, and the same without its silence: what
        :meth:`lost_given_silence` and :meth:`silence_survival` give, one parcel at a time,
        for the whole lane at once."""
        settings = self.settings
        age = np.array([parcel.age_hours for parcel in parcels], dtype=np.float64)
        delivered = np.array([parcel.delivered for parcel in parcels], dtype=np.bool_)
        until = np.array(
            [math.nan if parcel.until_hours is None else parcel.until_hours for parcel in parcels], dtype=np.float64
        )
        stage_names: list[Milestone | None] = [None, *sorted(GAP_MILESTONES)]
        stage_index = {stage: index for index, stage in enumerate(stage_names)}
        stages = np.array([stage_index[parcel.stage] for parcel in parcels], dtype=np.int64)
        health = self.health(lane[1], lane[3])
        silent = np.maximum(
            0.0,
            np.array([parcel.silent_hours for parcel in parcels], dtype=np.float64)
            - (health.silent_hours if health is not None else 0.0),
        )
        delivery = self.curve(lane, Milestone.DELIVERY)
        never = delivery.survival[BUCKETS]
        waiting = self._waiting_many(lane, age, until)
        with np.errstate(divide="ignore", invalid="ignore"):
            ever = np.where(waiting > 1e-12, np.maximum(0.0, waiting - never) / waiting, 0.0)
        prior_alive = np.minimum(1.0 - settings.silence_min_dead, np.maximum(0.0, ever))
        shown = np.ones(len(parcels))
        passed = np.zeros(len(parcels), dtype=np.bool_)
        for index, stage in enumerate(stage_names):
            in_stage = stages == index
            if stage is None or not np.any(in_stage):
                continue
            shown[in_stage] = self._silence_survival_many(lane, stage, silent[in_stage])
            passed[in_stage] = stage is not Milestone.GAP_TRANSIT
        posterior = prior_alive * shown + (1.0 - prior_alive)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(posterior > 0, shown / posterior, 0.0)
        silenced = stages != stage_index[None]
        expected = np.where(delivered, 0.0, 1.0 - prior_alive)
        lost = np.where(delivered, 0.0, np.where(silenced, 1.0 - prior_alive * factor, expected))
        weight = halving_many(np.maximum(0.0, age), settings.silence_cohort_half_life_days)
        member = Cohort(
            weight,
            delivered,
            np.where(delivered, 1.0, prior_alive),
            np.where(delivered, 0.0, shown),
            passed & ~delivered,
        )
        return member, lost, expected

    def _waiting_many(self, lane: LaneKey, elapsed: Floats, until: Floats) -> Floats:
        """:meth:`_waiting` for many parcels of one lane (``until`` NaN where unknown): on the
        lane's delivery clock, as :meth:`delivery_position` counts it."""
        waiting = self.curve(lane, Milestone.DELIVERY).at_many(elapsed)
        if self.delivery_clock(lane) is Milestone.DELIVERY:
            return waiting
        on_promise = ~np.isnan(until) & ~(until < self.fastest_hours(lane))
        if not np.any(on_promise):
            return waiting
        curve = self.curve(lane, Milestone.DELIVERY_BY_PROMISE)
        promised = until[on_promise]
        start = curve.at_many(np.maximum(0.0, PROMISE_OFFSET - promised))
        now = curve.at_many(np.maximum(0.0, PROMISE_OFFSET - (promised - elapsed[on_promise])))
        with np.errstate(divide="ignore", invalid="ignore"):
            waiting[on_promise] = np.where(start <= 1e-12, 0.0, now / start)
        return waiting

    def _silence_survival_many(self, lane: LaneKey, stage: Milestone, silent_hours: Floats) -> Floats:
        """:meth:`silence_survival` for many silences in one lane and stage."""
        curve = self.curve(lane, stage)
        never = curve.survival[BUCKETS]
        if never >= 1.0 - 1e-6:
            return np.ones(len(silent_hours))
        return np.maximum(0.0, np.minimum(1.0, (curve.at_many(silent_hours) - never) / (1.0 - never)))

    def _seller_silent_share(
        self,
        level: tuple[str, ...],
        cohorts: Mapping[tuple[str, ...], Cohort],
        peers: Mapping[tuple[str, str], dict[str, tuple[float, float]]],
    ) -> float:
        """A seller's lane's going-silent share (:func:`credible_share`), beyond what the
        carrier's other sellers from the same origin show: silence that the median other
        seller shares is a congested hub or a slow customs, which delays everyone's parcels
        and loses none; a seller whose parcels alone go silent is losing them. With
        ``silence_loss_stages``, lost in transit and lost after it are two shares, each
        against the median peer's of its kind (:func:`by_stage`)."""
        _, seller, carrier, service, origin, marketplace = level
        if self.delivery_clock((seller, carrier, service, origin, marketplace)) is not Milestone.DELIVERY:
            # Where transit follows the promise, so do the silences, which are pooled over
            # every promise: a far promise's parcel looks silent for longer than it is.
            return 0.0
        settings = self.settings
        others = [shares for name, shares in peers.get((carrier, origin), {}).items() if name != seller]

        def median_peer(index: int) -> float:
            if len(others) < settings.peer_min_sellers:
                return 0.0
            return sorted(shares[index] for shares in others)[len(others) // 2]

        def beyond_peers(parcels: Cohort, shared: float) -> float:
            return credible_share(parcels.guarded(shared), settings.silence_mixture_z, settings.change_estimate)

        cohort = cohorts[level]
        if settings.silence_loss_stages:
            transit, after = by_stage(cohort)
            raw = combined(beyond_peers(transit, median_peer(0)), beyond_peers(after, median_peer(1)))
        else:
            raw = beyond_peers(cohort, median_peer(0))
        # Never less than one parcel: one stalled parcel of two is no trend.
        return raw if raw * len(cohort) >= 1.0 else 0.0

    def curve(self, lane: LaneKey, milestone: Milestone) -> Curve:
        """The most specific curve known for ``lane`` (a new seller gets the lane's, and so on)."""
        for level in reversed(levels(lane)):
            found = self._curves.get((level, milestone))
            if found is not None:
                return found
        return self._priors[milestone]

    def lane_curve(self, lane: LaneKey, milestone: Milestone) -> Curve:
        """The curve of the lane across sellers (what a service does, whoever ships with it)."""
        _, carrier, service, origin, marketplace = lane
        return self.curve(("", carrier, service, origin, marketplace), milestone)

    def health(self, carrier: str, origin: str) -> CarrierHealth | None:
        return self.state.health.get((carrier, origin))

    def rarely_scans_delivery(self, lane: LaneKey) -> bool:
        """Full-tracking parcels of this service almost never get a delivery scan (learnt)."""
        curve = self.lane_curve(lane, Milestone.DELIVERY)
        hours = self.settings.partial_only_days * 24.0
        return (
            curve.known_at(hours) >= self.settings.partial_only_min_exposure
            and 1.0 - curve.at(hours) < self.settings.partial_only_share
        )

    def reach_first_scan_then_delivery(self, lane: LaneKey, elapsed_hours: float, deadline_hours: float) -> float:
        """Unscanned full-tracking package: first scan, then delivery, both before the deadline."""
        memo_key = (lane, round(elapsed_hours), round(deadline_hours))
        found = self._memo.get(memo_key)
        if found is not None:
            return found
        first = self.curve(lane, Milestone.FIRST_SCAN)
        waiting = first.at(elapsed_hours)
        total = 0.0
        if waiting > 1e-12 and deadline_hours > elapsed_hours:
            step = 6.0
            start = elapsed_hours
            while start < deadline_hours:
                end = min(deadline_hours, start + step)
                reached_here = (first.at(start) - first.at(end)) / waiting
                total += reached_here * self.delivery_position(lane, 0.0, deadline_hours - (start + end) / 2)[1]
                start = end
        bounded_put(self._memo, memo_key, total)
        return total

    def estimate(
        self,
        lane: LaneKey,
        *,
        full_tracking: bool,
        physical_scans: int,
        first_scan_at: datetime | None,
        confirmed_at: datetime,
        deadline: datetime,
        now: datetime,
        malformed: bool,
        last_scan_at: datetime | None = None,
        last_scan_status: str | None = None,
    ) -> tuple[float, Reason]:
        """Probability that a pending package is valid by ``deadline`` and the reason a seller
        reads for it. Times are naive UTC; the last physical scan (time and status) says
        how long a scanned parcel has been silent, and in which stage."""
        settings = self.settings
        outage = self.health(lane[1], lane[3])
        if outage is not None and outage.source_outage:
            # The push source has delivered nothing since its outage began (services/scorer/
            # domain/sources.py): price the parcel as of then, not as if it had gone quiet itself.
            now = max(confirmed_at, now - timedelta(hours=outage.silent_hours))
        rarely = full_tracking and self.rarely_scans_delivery(lane)
        if physical_scans == 0 or first_scan_at is None:
            elapsed, until = hours_of(now - confirmed_at), hours_of(deadline - confirmed_at)
            first = self.curve(lane, Milestone.FIRST_SCAN)
            if full_tracking:
                probability = self.reach_first_scan_then_delivery(lane, elapsed, until)
                probability *= 1.0 - self.going_silent(lane)
            else:
                probability = first.reach_by(elapsed, until)
            probability = min(1.0, probability * self.change.backlog_factor(lane, elapsed, first))
            probability *= self._alive(lane, Milestone.FIRST_SCAN, elapsed, first)
            if malformed:
                reason = Reason.MALFORMED_TRACKING_NUMBER
            elif rarely:
                reason = Reason.SERVICE_RARELY_SCANS_DELIVERY
            elif first.share_by(elapsed) >= settings.overdue_share or (
                elapsed >= self.usual_hours(lane, Milestone.FIRST_SCAN)
                and self._alive(lane, Milestone.FIRST_SCAN, elapsed, first) < 0.5
            ):
                reason = Reason.OVERDUE_FIRST_SCAN
            else:
                reason = Reason.AWAITING_FIRST_SCAN
        else:
            # Full tracking, scanned, no delivery scan yet.
            elapsed, until = hours_of(now - first_scan_at), hours_of(deadline - first_scan_at)
            waiting, reach, done = self.delivery_position(lane, elapsed, until)
            alive = self._alive_in_transit(lane, waiting, done)
            probability = reach * alive
            stage = STAGE_OF_SCAN.get(last_scan_status or "")
            silent = self.parcel_silence(lane, hours_of(now - last_scan_at)) if last_scan_at is not None else 0.0
            _, silence = self.lost_given_silence(lane, elapsed, stage, silent, alive, until)
            probability *= silence
            if rarely:
                reason = Reason.SERVICE_RARELY_SCANS_DELIVERY
            elif done >= settings.overdue_share or silence < 0.5:
                reason = Reason.STALLED_IN_TRANSIT
            else:
                reason = Reason.AWAITING_DELIVERY_SCAN
        if malformed:
            probability *= settings.malformed_factor
        health = self.health(lane[1], lane[3])
        if health is not None and health.silent(settings):
            probability *= health.factor(settings)
            if reason in SILENCE_MASKS:
                reason = Reason.CARRIER_SILENT
        return round(min(1.0, max(0.0, probability)), 3), reason

    def _alive(self, lane: LaneKey, milestone: Milestone, elapsed: float, curve: Curve) -> float:
        """Probability that a package still waiting for its first scan after ``elapsed``
        hours is not one of the lane's recent dead parcels (see :meth:`FirstScanChange.dead_share`). Before
        the usual time the most recent informative cohort (the one that just passed the
        usual time) tells."""
        if self._source_outage(lane):
            return 1.0  # the recent cohorts wait for scans their push source withholds
        usual = self.usual_hours(lane, milestone)
        if elapsed < usual:
            return 1.0 - self.change.dead_share(lane, usual)
        return alive_share(self.change.dead_share(lane, elapsed), curve.at(elapsed))

    def _alive_in_transit(self, lane: LaneKey, waiting: float, done: float) -> float:
        """The same for a scanned parcel waiting for its delivery scan, ``waiting`` being the
        share of parcels like it still waiting and ``done`` the share of the timely
        deliveries that happened by now. Between the first scan and the delivery, the recent
        cohorts' waiting cannot tell a lane that got slower (a congested hub) from one that
        loses parcels; their silences can (:meth:`going_silent`)."""
        if self._source_outage(lane):
            return 1.0  # the recent cohorts wait for scans their push source withholds
        dead = self.going_silent(lane)
        if done < self.settings.usual_share:
            return 1.0 - dead
        return alive_share(dead, waiting)

    def changed_lanes(self, previous: Model | None, lanes: Iterable[LaneKey]) -> set[LaneKey]:
        """Lanes whose curves or carrier health moved enough to re-evaluate their packages."""
        if previous is None:
            return set(lanes)
        changed = set()
        for lane in lanes:
            if (
                self._silent(lane) != previous._silent(lane)
                or abs(self.going_silent(lane) - previous.going_silent(lane)) > 0.01
                or self.delivery_clock(lane) is not previous.delivery_clock(lane)
            ):
                changed.add(lane)
                continue
            for milestone in Milestone:
                mine, theirs = self.curve(lane, milestone), previous.curve(lane, milestone)
                if any(abs(mine.survival[b] - theirs.survival[b]) > 0.01 for b in CHANGE_PROBES):
                    changed.add(lane)
                    break
        return changed

    def _source_outage(self, lane: LaneKey) -> bool:
        health = self.health(lane[1], lane[3])
        return health is not None and bool(health.source_outage)

    def _silent(self, lane: LaneKey) -> bool:
        health = self.health(lane[1], lane[3])
        return health is not None and health.silent(self.settings)


def alive_share(dead: float, waiting: float) -> float:
    """Probability that a waiting package is not one of the ``dead`` share, when ``waiting``
    of the lane's live ones are still waiting at its age."""
    if dead <= 0.0:
        return 1.0
    alive = (1.0 - dead) * waiting
    return alive / (alive + dead) if alive + dead > 0 else 0.0
