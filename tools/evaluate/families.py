"""Scenario families for ``make evaluate``: seeded marketplaces in which some sellers drift
towards the floor in a known way and others must stay quiet.

Each family is a function of a seed that returns a :class:`ScenarioConfig`. Whether a
seller-category actually breaches, and when, is never assumed here: the ground truth is
computed afterwards by the simulator's own rules (``tools/simulate/truth.py``) from every
scan the simulated carriers will ever record.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from tools.simulate.catalog import FailureRates, Source
from tools.simulate.scenario import (
    Blackout,
    CarrierStop,
    Lane,
    LanePhase,
    Outage,
    PromiseTransit,
    ScenarioConfig,
    Seller,
    ValueMix,
)

#: Marketplace, category and the carrier services a lane there ships with.
LANES: tuple[tuple[str, str, str], ...] = (
    ("SG", "Toys & Games", "yanwen/line"),
    ("AE", "Home & Kitchen", "yunexpress/line"),
    ("US", "Electronics", "china-post/epacket"),
    ("SA", "Sports & Outdoors", "yunexpress/line"),
    ("UK", "Beauty", "china-post/epacket"),
    ("JP", "Pet Supplies", "yanwen/line"),
    ("MX", "Clothing", "4px/standard"),
    ("AU", "Electronics", "sfc/priority"),
)

FULL_HEAVY = ValueMix(below=0.55, at=0.05, above=0.40)
HEALTHY = FailureRates(no_pickup=0.004, lost_in_transit=0.004, no_delivery_scan=0.003, late_pickup=0.02)
#: Healthy sellers at 97-98%: above the floor, not far.
NEAR_FLOOR = FailureRates(no_pickup=0.01, lost_in_transit=0.008, no_delivery_scan=0.008, late_pickup=0.03)


def _lane(index: int, orders: float, **extra: object) -> Lane:
    marketplace, category, service = LANES[index % len(LANES)]
    return Lane(marketplace, category, orders, ((service, 1.0),), **extra)  # type: ignore[arg-type]


def _controls(rng: random.Random, prefix: str, count: int) -> tuple[Seller, ...]:
    """Comfortable sellers on the same carriers: the background every lane is learnt against."""
    return tuple(
        Seller(f"{prefix}-OK{i}", (_lane(rng.randrange(len(LANES)), rng.uniform(4, 10)),), role="control")
        for i in range(count)
    )


def carrier_stop(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """A carrier stops scanning a share of one seller's parcels, started 1-6 days ago."""
    rng = random.Random(f"carrier_stop:{seed}")
    sellers, stops = [], []
    for i in range(8):
        days_ago, share = rng.randint(1, 12), rng.choice((0.3, 0.5, 0.7, 1.0))
        lane = _lane(i, rng.uniform(6, 12))
        seller_id = f"STOP{i}"
        sellers.append(Seller(seller_id, (lane,), role="failing"))
        stops.append(CarrierStop(seller_id, lane.services[0][0], -days_ago, share))
    return ScenarioConfig(sellers=(*sellers, *_controls(rng, "STOP", 4)), stops=tuple(stops))


def delivery_stop(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """A lane stops getting delivery scans (parcels arrive, nobody scans the delivery)."""
    rng = random.Random(f"delivery_stop:{seed}")
    sellers = []
    for i in range(8):
        days_ago, share = rng.randint(2, 16), rng.choice((0.4, 0.6, 0.9))
        base = _lane(i, rng.uniform(6, 12))
        failing = FailureRates(no_pickup=0.004, lost_in_transit=0.004, no_delivery_scan=share)
        lane = replace(base, values=FULL_HEAVY, phases=(LanePhase(-days_ago, base.services, FULL_HEAVY, failing),))
        sellers.append(Seller(f"DLVR{i}", (lane,), role="failing"))
    return ScenarioConfig(sellers=(*sellers, *_controls(rng, "DLVR", 4)))


def stalls(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """Parcels stall in transit: scanned at origin, then nothing."""
    rng = random.Random(f"stalls:{seed}")
    sellers = []
    for i in range(8):
        days_ago, share = rng.randint(2, 14), rng.choice((0.15, 0.3, 0.5))
        base = _lane(i, rng.uniform(6, 12))
        failing = FailureRates(no_pickup=0.004, lost_in_transit=share)
        lane = replace(base, values=FULL_HEAVY, phases=(LanePhase(-days_ago, base.services, FULL_HEAVY, failing),))
        sellers.append(Seller(f"STALL{i}", (lane,), role="failing"))
    return ScenarioConfig(sellers=(*sellers, *_controls(rng, "STALL", 4)))


def unmapped_carrier(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """Part of a seller's orders go out with a carrier Amazon does not integrate."""
    rng = random.Random(f"unmapped:{seed}")
    sellers = []
    for i in range(7):
        days_ago, share = rng.randint(1, 14), rng.choice((0.05, 0.1, 0.2))
        base = _lane(i, rng.uniform(6, 12))
        service = base.services[0][0]
        mixed = ((service, 1.0 - share), ("fast-cargo/express", share))
        lane = replace(base, phases=(LanePhase(-days_ago, mixed),))
        sellers.append(Seller(f"UNMAP{i}", (lane,), role="failing"))
    return ScenarioConfig(sellers=(*sellers, *_controls(rng, "UNMAP", 4)))


def unknown_partial_only(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """An untracked economy product whose name the policy does not list, used for orders
    that need full tracking; cheaper orders have used it for months (so it can be learnt)."""
    rng = random.Random(f"partial_only:{seed}")
    sellers = []
    for i in range(6):
        days_ago, above = rng.randint(1, 14), rng.choice((0.06, 0.1, 0.2))
        cheap = ValueMix(below=1.0, at=0.0, above=0.0)
        mix = ValueMix(below=1.0 - above, at=0.0, above=above)
        lane = Lane("SG", "Beauty", rng.uniform(6, 12), (("yanwen/economy", 1.0),), cheap,
                    (LanePhase(-days_ago, (("yanwen/economy", 1.0),), mix),))  # fmt: skip
        sellers.append(Seller(f"PONLY{i}", (lane,), role="failing"))
    background = tuple(
        Seller(f"PONLY-BG{i}", (Lane("SG", "Toys & Games", 8, (("yanwen/economy", 1.0),), ValueMix(1.0, 0.0, 0.0)),))
        for i in range(2)
    )
    return ScenarioConfig(sellers=(*sellers, *background, *_controls(rng, "PONLY", 3)))


def surge(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """Near the floor already, then a volume surge on an overloaded carrier."""
    rng = random.Random(f"surge:{seed}")
    sellers = []
    near = FailureRates(no_pickup=0.02, lost_in_transit=0.01, no_delivery_scan=0.01)
    overloaded = FailureRates(no_pickup=0.06, lost_in_transit=0.03, no_delivery_scan=0.02)
    for i in range(7):
        days_ago, factor = rng.randint(1, 12), rng.choice((1.5, 2.0, 3.0))
        base = _lane(i, rng.uniform(5, 9))
        surge_phase = LanePhase(-days_ago, base.services, base.values, overloaded, base.orders_per_day * factor)
        lane = replace(base, failures=near, phases=(surge_phase,))
        sellers.append(Seller(f"SURGE{i}", (lane,), role="failing"))
    return ScenarioConfig(sellers=(*sellers, *_controls(rng, "SURGE", 4)))


def carrier_outage(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """A carrier goes silent for every seller, 12-36 hours before the evaluation (``hour``
    of today, UTC): only carrier health across sellers can see it that early."""
    rng = random.Random(f"outage:{seed}")
    sellers = []
    for i in range(6):
        marketplace = ("AE", "SA", "SG", "MX", "AU", "JP")[i]
        lane = Lane(marketplace, "Home & Kitchen", rng.uniform(4, 12), (("yunexpress/line", 1.0),))
        sellers.append(Seller(f"OUT{i}", (lane,), role="failing"))
    silent_hours = rng.choice((12, 24, 36))
    return ScenarioConfig(
        sellers=(*sellers, *_controls(rng, "OUT", 4)), blackouts=(Blackout("yunexpress/line", hour - silent_hours),)
    )


def slow_reliable(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """Controls: carriers whose first scan comes 3-8 days after confirmation, and does come."""
    rng = random.Random(f"slow:{seed}")
    slow = FailureRates(no_pickup=0.003, lost_in_transit=0.003, no_delivery_scan=0.002, late_pickup=0.9)
    sellers = []
    for i in range(6):
        marketplace, category = ("US", "UK", "SG", "JP", "AE", "SA")[i], "Toys & Games"
        lane = Lane(marketplace, category, rng.uniform(5, 12), (("china-post/registered", 1.0),),
                    ValueMix(below=1.0, at=0.0, above=0.0), failures=slow)  # fmt: skip
        sellers.append(Seller(f"SLOW{i}", (lane,), role="control"))
    return ScenarioConfig(sellers=(*sellers, *_controls(rng, "SLOW", 2)))


def comfortable(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """Controls: comfortable sellers with the usual random failures, and high volume at 97-98%."""
    rng = random.Random(f"comfortable:{seed}")
    sellers = [Seller(f"COMF{i}", (_lane(i, rng.uniform(3, 15), failures=HEALTHY),), role="control")
               for i in range(6)]  # fmt: skip
    for i in range(4):
        lane = _lane(i + 3, rng.uniform(35, 45), failures=NEAR_FLOOR, values=ValueMix(0.7, 0.05, 0.25))
        sellers.append(Seller(f"HIVOL{i}", (lane,), role="control"))
    return ScenarioConfig(sellers=tuple(sellers))


def hub_congestion(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """A carrier's hub is congested for every seller since a few days: its parcels sit
    silent 2-4 days longer than ever before between export and arrival, then are
    delivered. Silence that is new but not loss: the truth decides whether it costs
    validity (a parcel delivered after its counting day does)."""
    rng = random.Random(f"congestion:{seed}")
    days_ago, hold = rng.randint(3, 10), rng.choice((2.0, 3.0, 4.0))
    sellers = []
    for i in range(6):
        marketplace = ("AE", "SA", "SG", "MX", "AU", "JP")[i]
        base = Lane(marketplace, "Home & Kitchen", rng.uniform(5, 12), (("yunexpress/line", 1.0),))
        held = LanePhase(-days_ago, base.services, base.values, replace(HEALTHY, hold_days=hold))
        sellers.append(Seller(f"HUB{i}", (replace(base, failures=HEALTHY, phases=(held,)),), role="control"))
    return ScenarioConfig(sellers=(*sellers, *_controls(rng, "HUB", 4)))


def customs_routine(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """Controls: a lane whose parcels always wait 2-4 extra days in customs (long silences are
    its normal), a seller new to it with a week of history, and the usual background."""
    rng = random.Random(f"customs:{seed}")
    held = replace(HEALTHY, hold_days=rng.choice((2.0, 3.0, 4.0)))
    lane = Lane("SA", "Beauty", 0.0, (("china-post/registered", 1.0),), failures=held)
    sellers = [
        Seller(f"CUST{i}", (replace(lane, orders_per_day=rng.uniform(5, 12)),), role="control") for i in range(5)
    ]
    newcomer = replace(
        lane, orders_per_day=0.0, phases=(LanePhase(-7, lane.services, lane.values, held, rng.uniform(6, 10)),)
    )
    return ScenarioConfig(
        sellers=(*sellers, Seller("CUST-NEW", (newcomer,), role="control"), *_controls(rng, "CUST", 3))
    )


def gradual_decline(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """A lane whose parcels get lost in transit a little more every week for three weeks."""
    rng = random.Random(f"gradual:{seed}")
    sellers = []
    for i in range(7):
        base = _lane(i, rng.uniform(6, 12))
        step = rng.choice((0.04, 0.06, 0.08))
        phases = tuple(
            LanePhase(-days, base.services, FULL_HEAVY, FailureRates(no_pickup=0.004, lost_in_transit=step * k))
            for k, days in enumerate((21, 14, 7), start=1)
        )
        sellers.append(Seller(f"GRAD{i}", (replace(base, values=FULL_HEAVY, phases=phases),), role="failing"))
    return ScenarioConfig(sellers=(*sellers, *_controls(rng, "GRAD", 4)))


def small_categories(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """Controls: categories of a few orders a week to a couple a day (10-60 packages in the
    window), with the usual random failures, where one late parcel moves the rate by points."""
    rng = random.Random(f"small:{seed}")
    sellers = [
        Seller(f"SMALL{i}", (_lane(i, rng.uniform(0.4, 2.0), failures=HEALTHY),), role="control") for i in range(10)
    ]
    return ScenarioConfig(sellers=(*sellers, *_controls(rng, "SMALL", 4)))


def peak_season(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """Controls: a sales peak (2-3x the orders for the last 3-10 days) on healthy lanes: many
    young parcels at once, none of them in trouble."""
    rng = random.Random(f"peak:{seed}")
    sellers = []
    for i in range(8):
        days_ago, factor = rng.randint(3, 10), rng.choice((2.0, 2.5, 3.0))
        base = _lane(i, rng.uniform(4, 10), failures=HEALTHY)
        peak = LanePhase(-days_ago, base.services, base.values, HEALTHY, base.orders_per_day * factor)
        sellers.append(Seller(f"PEAK{i}", (replace(base, phases=(peak,)),), role="control"))
    return ScenarioConfig(sellers=(*sellers, *_controls(rng, "PEAK", 3)))


def origin_backlog(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """A pickup backlog at origin (a holiday, a warehouse move) for every seller of one
    service since 2-6 days: most parcels are first scanned 3-8 days late, then travel as
    usual. Late but not lost: the truth decides whether it costs validity."""
    rng = random.Random(f"backlog:{seed}")
    days_ago, late = rng.randint(2, 6), rng.choice((0.5, 0.7, 0.9))
    backlog = replace(HEALTHY, late_pickup=late)
    service = "yunexpress/line"

    def backlogged(lane: Lane) -> Lane:
        if lane.services[0][0] != service:
            return lane
        return replace(lane, phases=(LanePhase(-days_ago, lane.services, lane.values, backlog),))

    sellers = []
    for i in range(6):
        marketplace = ("AE", "SA", "SG", "MX", "AU", "JP")[i]
        base = Lane(marketplace, "Sports & Outdoors", rng.uniform(5, 12), ((service, 1.0),), failures=HEALTHY)
        sellers.append(Seller(f"BACK{i}", (backlogged(base),), role="control"))
    # The background sellers that ship with the same service are in the backlog too.
    controls = tuple(
        replace(seller, lanes=tuple(map(backlogged, seller.lanes))) for seller in _controls(rng, "BACK", 4)
    )
    return ScenarioConfig(sellers=(*sellers, *controls))


def new_sellers(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """Controls: sellers who started 4-12 days ago on ordinary lanes, so most of their
    packages are still in flight and the window holds few of them."""
    rng = random.Random(f"new:{seed}")
    sellers = []
    for i in range(8):
        base = _lane(i, 0.0, failures=HEALTHY)
        start = LanePhase(-rng.randint(4, 12), base.services, base.values, HEALTHY, rng.uniform(4, 12))
        sellers.append(Seller(f"NEW{i}", (replace(base, phases=(start,)),), role="control"))
    return ScenarioConfig(sellers=(*sellers, *_controls(rng, "NEW", 4)))


def mixed_portfolio(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """Sellers with three categories in one marketplace: one category's carrier starts losing
    parcels in transit (2-12 days ago), the other two ship healthy with another carrier.
    The healthy categories must stay quiet while the failing one is warned."""
    rng = random.Random(f"mixed:{seed}")
    sellers = []
    for i in range(6):
        marketplace, _, service = LANES[i]
        other = next(s for _, _, s in LANES if s != service)
        days_ago, share = rng.randint(2, 12), rng.choice((0.2, 0.35, 0.5))
        failing = FailureRates(no_pickup=0.004, lost_in_transit=share)
        bad = Lane(marketplace, "Electronics", rng.uniform(6, 12), ((service, 1.0),), FULL_HEAVY,
                   (LanePhase(-days_ago, ((service, 1.0),), FULL_HEAVY, failing),))  # fmt: skip
        good = tuple(
            Lane(marketplace, category, rng.uniform(4, 10), ((other, 1.0),), failures=HEALTHY)
            for category in ("Beauty", "Pet Supplies")
        )
        sellers.append(Seller(f"MIX{i}", (bad, *good), role="failing"))
    return ScenarioConfig(sellers=(*sellers, *_controls(rng, "MIX", 3)))


def destination_slowdown(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """Controls: parcels wait 2-4 days longer than ever between their arrival scan and
    out-for-delivery (a customs slowdown, a holiday) in one marketplace, for every seller
    and carrier there, for the parcels handed over in the last 6-12 days: silence at the
    destination that is new but not loss (the truth decides whether it costs validity)."""
    rng = random.Random(f"destination:{seed}")
    days_ago, hold = rng.randint(6, 12), rng.choice((2.0, 3.0, 4.0))
    held = replace(HEALTHY, destination_hold_days=hold)
    sellers = []
    for i in range(8):
        marketplace, category, service = ("AE", "Home & Kitchen", ("yunexpress/line", "china-post/epacket")[i % 2])
        base = Lane(marketplace, category, rng.uniform(5, 12), ((service, 1.0),), failures=HEALTHY)
        phase = LanePhase(-days_ago, base.services, base.values, held)
        sellers.append(Seller(f"DEST{i}", (replace(base, phases=(phase,)),), role="control"))
    return ScenarioConfig(sellers=(*sellers, *_controls(rng, "DEST", 3)))


def source_outage(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """Controls: an aggregator's webhook (17TRACK: 4PX and SFC) pushes nothing since
    yesterday or today 00:00 UTC; the carriers scan as usual and the pushes come late.
    Only the pushes stopped: no seller's rate is at risk, though the sellers are at 97-98%."""
    rng = random.Random(f"source_outage:{seed}")
    sellers = []
    for i in range(6):
        marketplace, service = (("MX", "4px/standard"), ("AU", "sfc/priority"))[i % 2]
        # Healthy but not far above the floor (97-98%), where a wrong reading would show.
        lane = Lane(marketplace, "Electronics", rng.uniform(10, 25), ((service, 1.0),), failures=NEAR_FLOOR)
        sellers.append(Seller(f"PUSH{i}", (lane,), role="control"))
    days = (0,) if rng.random() < 0.5 else (-1, 0)
    return ScenarioConfig(
        sellers=(*sellers, *_controls(rng, "PUSH", 4)),
        outages=tuple(Outage(Source.SEVENTEEN_TRACK, day) for day in days),
    )


#: Seeds from this one on draw the promise families' parameters from :data:`HELD_OUT_WORLD`:
#: other carriers, marketplaces, promise spreads and failure rates, never tuned on.
HELD_OUT_FROM_SEED = 100


@dataclass(frozen=True)
class PromiseWorld:
    """What the promise families draw their lanes and promises from."""

    lanes: tuple[tuple[str, str], ...]
    #: Shortest promise lag (days) and the spread above it.
    lag_low: tuple[int, ...]
    lag_spread: tuple[int, ...]
    early_low: tuple[float, float]
    early_high: tuple[float, float]
    #: Each healthy failure rate (no pickup, lost, no delivery scan) is drawn from this range.
    healthy_rate: tuple[float, float]


TUNED_WORLD = PromiseWorld(
    lanes=(("SG", "yanwen/line"), ("AE", "yunexpress/line"), ("US", "china-post/epacket"), ("MX", "4px/standard")),
    lag_low=(7, 8, 9),
    lag_spread=(9, 11, 13),
    early_low=(0.5, 1.5),
    early_high=(3.0, 4.5),
    healthy_rate=(0.002, 0.01),
)
HELD_OUT_WORLD = PromiseWorld(
    lanes=(
        ("UK", "sunyou/economy"),
        ("DE", "dhl-ecommerce/packet"),
        ("JP", "china-post/registered"),
        ("AU", "sfc/priority"),
        ("SA", "yunexpress/line"),
    ),
    lag_low=(6, 10, 12),
    lag_spread=(7, 10, 15),
    early_low=(0.2, 1.0),
    early_high=(2.5, 6.0),
    healthy_rate=(0.001, 0.012),
)


def _promise_sellers(
    rng: random.Random, prefix: str, world: PromiseWorld, failing: int, healthy: int
) -> tuple[tuple[Seller, ...], tuple[CarrierStop, ...], PromiseTransit]:
    """Sellers on lanes whose parcels follow their promise (half the services, drawn: the
    model is not told which), ``failing`` of them with a failure that began 2-12 days ago
    (stalls, a delivery stop, a carrier stop or a pickup failure) and ``healthy`` at 0.5-3%
    random failures, half of them with many full-tracking orders."""
    low = rng.choice(world.lag_low)
    services = tuple(service for _, service in world.lanes)
    following = tuple(rng.sample(services, max(1, len(services) // 2 + rng.randint(0, 1))))
    promise = PromiseTransit(
        lag_days=(low, low + rng.choice(world.lag_spread)),
        early_days=(rng.uniform(*world.early_low), rng.uniform(*world.early_high)),
        services=following,
    )
    sellers: list[Seller] = []
    stops: list[CarrierStop] = []
    for i in range(failing + healthy):
        marketplace, service = world.lanes[i % len(world.lanes)]
        no_pickup, lost, no_delivery = (rng.uniform(*world.healthy_rate) for _ in range(3))
        rates = FailureRates(no_pickup, lost, no_delivery, late_pickup=0.02)
        values = FULL_HEAVY if rng.random() < 0.5 else ValueMix()
        lane = Lane(marketplace, "Home & Kitchen", rng.uniform(5, 15), ((service, 1.0),), values, failures=rates)
        seller_id = f"{prefix}{i}"
        if i >= failing:
            sellers.append(Seller(seller_id, (lane,), role="control"))
            continue
        days_ago, share = rng.randint(2, 12), rng.choice((0.35, 0.5, 0.8))
        kind = ("stall", "delivery_stop", "carrier_stop", "no_pickup")[i % 4]
        if kind == "carrier_stop":
            stops.append(CarrierStop(seller_id, service, -days_ago, share))
        else:
            broken = {
                "stall": replace(rates, lost_in_transit=share),
                "delivery_stop": replace(rates, no_delivery_scan=share),
                "no_pickup": replace(rates, no_pickup=share / 2),
            }[kind]
            lane = replace(lane, values=FULL_HEAVY, phases=(LanePhase(-days_ago, lane.services, FULL_HEAVY, broken),))
        sellers.append(Seller(seller_id, (lane,), role="failing"))
    return tuple(sellers), tuple(stops), promise


def _promise_family(name: str, seed: int, failing: int, healthy: int, backfill: bool) -> ScenarioConfig:
    rng = random.Random(f"{name}:{seed}")
    world = HELD_OUT_WORLD if seed >= HELD_OUT_FROM_SEED else TUNED_WORLD
    prefix = name.upper().replace("_", "")[:6]
    sellers, stops, promise = _promise_sellers(rng, prefix, world, failing, healthy)
    return ScenarioConfig(
        sellers=sellers,
        stops=stops,
        promise_transit=promise,
        history_days=60 if backfill else 45,
        backfill_days=35 if backfill else None,
    )


def promise_transit(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """Controls: each parcel's transit follows its own promise (a promise lag of 7-22 days,
    delivered 0.5-4.5 days before the promised date) on some of the services, first scans
    3-40 hours after confirmation, 0.5-3% random failures."""
    return _promise_family("promise_transit", seed, 0, 10, backfill=False)


def promise_failing(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """Transit that follows the promise, and a failure in 6 of 10 sellers' lanes (stalls, a
    delivery stop, a carrier stop, pickups that stop) from 2-12 days ago."""
    return _promise_family("promise_failing", seed, 6, 4, backfill=False)


def backfill(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """Controls: the history is a seller's backfill, the orders promised in the last five weeks
    plus the ones still open, on lanes whose transit follows the promise (some) or not."""
    return _promise_family("backfill", seed, 0, 10, backfill=True)


def backfill_failing(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """A backfilled history (as :func:`backfill`) with a failure in 6 of 10 sellers' lanes."""
    return _promise_family("backfill_failing", seed, 6, 4, backfill=True)


def two_regions(seed: int, hour: float = 12.0) -> ScenarioConfig:
    """Controls: a seller's orders in one marketplace go to two regions far apart on one
    service (a mainland and its remote islands, a capital and the provinces): a share of
    5-50% to a near region promised in 5-9 days, the rest 8-13 days later, and each parcel's
    transit follows its own promise. One lane, bimodal promise lags and transit times, 1-4%
    random failures (half the sellers at 97-98%): nothing breaches."""
    rng = random.Random(f"two_regions:{seed}")
    near = rng.randint(5, 7)
    far = near + rng.randint(8, 11)
    lanes = (("US", "china-post/epacket"), ("AU", "sfc/priority"), ("SA", "yunexpress/line"), ("JP", "yanwen/line"))
    promise = PromiseTransit(
        lag_days=(far, far + 2),
        early_days=(0.5, rng.uniform(2.0, 3.5)),
        services=tuple(service for _, service in lanes),
        second_region=(rng.uniform(0.05, 0.5), (near, near + 2)),
    )
    sellers = []
    for i in range(8):
        marketplace, service = lanes[i % len(lanes)]
        # Half of them near the floor (97-98%, many full-tracking orders), where a parcel of
        # the near region priced on the far region's transit (or the other way) would show.
        values, rates = (FULL_HEAVY, NEAR_FLOOR) if i % 2 else (ValueMix(), HEALTHY)
        lane = Lane(marketplace, "Home & Kitchen", rng.uniform(5, 15), ((service, 1.0),), values, failures=rates)
        sellers.append(Seller(f"REGION{i}", (lane,), role="control"))
    return ScenarioConfig(sellers=tuple(sellers), promise_transit=promise)


#: Each family: (seed, hour of today the evaluation runs at, UTC) -> scenario.
FAMILIES: dict[str, Callable[[int, float], ScenarioConfig]] = {
    "carrier_stop": carrier_stop,
    "delivery_stop": delivery_stop,
    "stalls": stalls,
    "unmapped_carrier": unmapped_carrier,
    "unknown_partial_only": unknown_partial_only,
    "surge": surge,
    "carrier_outage": carrier_outage,
    "slow_reliable": slow_reliable,
    "comfortable": comfortable,
    "hub_congestion": hub_congestion,
    "customs_routine": customs_routine,
    "gradual_decline": gradual_decline,
    "small_categories": small_categories,
    "peak_season": peak_season,
    "origin_backlog": origin_backlog,
    "new_sellers": new_sellers,
    "mixed_portfolio": mixed_portfolio,
    "destination_slowdown": destination_slowdown,
    "source_outage": source_outage,
    "promise_transit": promise_transit,
    "promise_failing": promise_failing,
    "backfill": backfill,
    "backfill_failing": backfill_failing,
    "two_regions": two_regions,
}
