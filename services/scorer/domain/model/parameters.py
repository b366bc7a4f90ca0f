"""The model's parameters (``[forecast]`` of policy.toml)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSettings:
    """Model parameters (``[forecast]`` of policy.toml)."""

    #: Weight of a package halves every this many days of age (recent lanes count more).
    half_life_days: float = 7.0
    #: Pseudo-packages at risk a level borrows from its parent in each bucket.
    shrinkage_weight: float = 6.0
    #: Packages confirmed this many days ago or less are learnt from.
    history_days: int = 56
    #: Prior curves (before any data): mean days to the milestone and share that gets it
    #: (docs/forecast.md, "Before any data", says where the numbers come from).
    prior_first_scan_days: float = 1.0
    prior_first_scan_share: float = 0.97
    prior_delivery_days: float = 8.0
    prior_delivery_share: float = 0.97
    #: ... and on the promise clock: the share delivered by the deadline, and the mean days
    #: before the deadline the deliveries come.
    prior_promise_share: float = 0.96
    prior_promise_early_days: float = 4.0
    #: A package whose tracking number looks malformed keeps this share of its probability.
    malformed_factor: float = 0.2
    #: A package whose aggregator stopped tracking it keeps this share of its probability.
    tracking_stopped_factor: float = 0.2
    #: A lane reaches "overdue"/"stalled" once this share of its eventual milestones has happened.
    overdue_share: float = 0.95
    #: The usual time to a milestone: when this share of the lane's eventual ones happened.
    usual_share: float = 0.8
    #: A service whose parcels get a delivery scan this rarely within ``partial_only_days``
    #: of their first scan is partial-only (whatever it is called) ...
    partial_only_share: float = 0.05
    partial_only_days: float = 14.0
    #: ... once this many (recency-weighted) parcels were observed that long.
    partial_only_min_exposure: float = 5.0
    #: Carrier health: silent once the scans expected during the silence reach this number
    #: (a Poisson count with this mean is 0 with probability e^-8, about 0.03%).
    silent_min_expected_scans: float = 8.0
    #: Probability factor for a silent carrier's parcels: halves every this many hours of silence.
    silent_half_life_hours: float = 12.0
    silent_min_factor: float = 0.05
    #: ... and never before this many hours without a scan (scans come in daily waves).
    silent_min_hours: float = 12.0
    #: Carrier health looks back this many hours for the usual rate (the last day excluded).
    health_baseline_hours: float = 7 * 24.0
    #: A pending package's probability is recomputed at least this often (time alone moves it).
    review_hours: float = 3.0
    #: Recent cohorts: packages that passed a given age within this many hours ...
    recent_hours: float = 48.0
    #: ... are shrunk towards the parent level's estimate with this many pseudo-packages ...
    recent_weight: float = 4.0
    #: ... and only their waiting beyond this many standard deviations of chance counts,
    #: and beyond what the median other seller of the carrier shows (a backlog), once at
    #: least this many other sellers' lanes had this many parcels pass that age recently.
    recent_z: float = 2.0
    #: Prior probability that a lane changed lately: above 0, a recent cohort's excess is
    #: credited by the posterior probability of a change instead of beyond ``recent_z``
    #: standard deviations (:func:`services.scorer.domain.model.change.credited_excess`).
    change_prior: float = 0.0
    #: How much of the going-silent mixture's lost share that cleared its guard
    #: (``silence_mixture_z``) is credited: ``lower_bound`` (the low end of its likelihood
    #: interval) or ``garrote`` (the non-negative garrote: 0 at the guard as before, nearly
    #: all of it once the evidence is strong: :func:`services.scorer.domain.model.change.shrunk_change`).
    #: The guard decides whether a lane changed; the garrote stops it from also biasing how
    #: much, which made the categories failing now optimistic (docs/forecast.md section 6).
    change_estimate: str = "garrote"
    #: ... the same for the recent cohorts' summed excess beyond ``recent_z`` standard
    #: deviations (the first scan's dead share, the going-silent excess of every level):
    #: ``lower_bound``, the excess beyond the guard (the garrote there warned one more healthy
    #: category on seeds 1-2 of ``make evaluate``; docs/forecast.md section 6).
    excess_estimate: str = "lower_bound"
    peer_min_sellers: int = 3
    peer_min_parcels: float = 5.0
    #: Orders not confirmed yet are projected from this many days of recent volume ...
    projection_volume_days: int = 7
    #: ... with the health of the packages confirmed between these many hours ago: old
    #: enough to have had their first scan, recent enough to show today's carrier.
    projection_health_from_hours: float = 24.0
    projection_health_to_hours: float = 96.0
    #: Silences between scans are learnt from the scans of packages confirmed this many days ago or less.
    silence_history_days: int = 28
    #: Before any data: mean days to the next scan in transit, at the destination and out
    #: for delivery.
    prior_gap_transit_days: float = 2.0
    prior_gap_destination_days: float = 1.5
    prior_gap_last_mile_days: float = 0.5
    #: A parcel is never assumed less likely than this to be lost, whatever its lane's
    #: history says: its silence can then always speak.
    silence_min_dead: float = 0.01
    #: Parcels whose first scan is this many hours old or more show whether their lane's
    #: parcels are going silent (younger ones cannot have been silent long enough yet) ...
    silence_cohort_from_hours: float = 96.0
    #: ... up to this age: the lane as it is lately, not a month ago ...
    silence_cohort_to_hours: float = 10 * 24.0
    #: ... the newest weighing most: a parcel's weight halves every this many days of age.
    silence_cohort_half_life_days: float = 5.0
    #: The going-silent share as the likeliest lost share of a mixture (each parcel on its
    #: way or lost), at the low end of its likelihood interval (``recent_z``): a parcel whose
    #: silence cannot show anything yet weighs nothing, instead of diluting the share
    #: (services/scorer/domain/model/silent_share.py). Off: the summed excess beyond
    #: ``recent_z`` standard errors.
    silence_share_mixture: bool = True
    #: ... the share credited being the low end of its likelihood interval at this many
    #: standard deviations (docs/forecast.md section 6: 2, 1.5, 1 and 0.5 measured).
    silence_mixture_z: float = 1.0
    #: ... as two shares, lost in transit and lost after it (at the destination, out for
    #: delivery), a parcel scanned at its destination counting as come through transit only
    #: (silent_share.by_stage); off: one share, such a parcel counting against any loss.
    silence_loss_stages: bool = True
    #: A level chooses its own delivery clock from this many (recency-weighted) deliveries on.
    clock_min_deliveries: float = 20.0
    #: A parcel whose promise leaves less time after its first scan than the lane's fastest
    #: this share of deliveries took is timed from its first scan, not on its promise.
    fast_share: float = 0.1
    #: The correlation of failures within a lane (domain/model/correlation.py) is learnt
    #: from the cohorts promised in this many days before the last matured one ...
    correlation_history_days: int = 28
    #: ... and each level is shrunk towards its parent (the top one towards
    #: ``VTR_FORECAST_CORRELATION``) with this many pseudo-cohorts (days).
    correlation_pseudo_cohorts: float = 14.0
    #: ... and never below ``VTR_FORECAST_CORRELATION`` (the learnt value only widens the band).
    correlation_prior_is_floor: bool = True
