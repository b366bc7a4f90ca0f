"""Ready-made scenarios: the demo's marketplace and a small one for the acceptance test."""

from __future__ import annotations

from tools.simulate.catalog import FailureRates, Source
from tools.simulate.scenario import CarrierStop, Lane, LanePhase, Outage, ScenarioConfig, Seller, ValueMix

DRIFTING_SELLER = "A2YIWUHOME"
SURFACE_SELLER = "A3GZBEAUTY"
#: The drifting seller's carrier stopped scanning this many days before today.
DRIFT_DAYS_AGO = 6
#: The surface seller started sending above-threshold orders by 平邮 this many days ago.
SURFACE_DAYS_AGO = 10

ALL_BELOW = ValueMix(below=1.0, at=0.0, above=0.0)


def demo_config() -> ScenarioConfig:
    """A few healthy sellers, one drifting (its carrier stops scanning), one on 平邮."""
    sellers = (
        Seller(
            "A1SZTOYS",
            (
                Lane("SG", "Toys & Games", 9, (("yanwen/line", 0.5), ("yunexpress/line", 0.5))),
                Lane("AE", "Toys & Games", 5, (("yunexpress/line", 0.8), ("4px/standard", 0.2))),
                Lane("US", "Toys & Games", 4, (("china-post/epacket", 0.7), ("4px/standard", 0.3))),
            ),
        ),
        Seller(
            "A4SZELEC",
            (
                Lane("UK", "Electronics", 5, (("china-post/epacket", 0.6), ("sfc/priority", 0.4))),
                Lane("JP", "Electronics", 4, (("yanwen/line", 0.7), ("china-post/registered", 0.3))),
                Lane("DE", "Home & Kitchen", 3, (("dhl-ecommerce/packet", 1.0),), ship_from="DE"),
                Lane("AU", "Electronics", 3, (("sfc/priority", 0.6), ("sunyou/economy", 0.4))),
            ),
        ),
        Seller(
            "A5DGSPORT",
            (
                Lane("SA", "Sports & Outdoors", 5, (("yunexpress/line", 1.0),)),
                Lane("MX", "Sports & Outdoors", 4, (("4px/standard", 0.6), ("sunyou/economy", 0.4))),
            ),
        ),
        Seller(
            DRIFTING_SELLER,
            (
                Lane("SG", "Home & Kitchen", 12, (("yanwen/line", 1.0),)),
                Lane("AE", "Home & Kitchen", 4, (("yunexpress/line", 1.0),)),
            ),
            role="drifting",
        ),
        Seller(
            SURFACE_SELLER,
            (
                Lane(
                    "AE",
                    "Beauty",
                    10,
                    (("china-post/surface", 0.5), ("china-post/epacket", 0.5)),
                    values=ALL_BELOW,
                    phases=(
                        LanePhase(
                            -SURFACE_DAYS_AGO,
                            (("china-post/surface", 1.0),),
                            ValueMix(below=0.6, at=0.05, above=0.35),
                        ),
                    ),
                ),
                Lane("SG", "Beauty", 4, (("china-post/epacket", 1.0),)),
            ),
            role="surface",
        ),
    )
    return ScenarioConfig(
        sellers=sellers,
        stops=(CarrierStop(DRIFTING_SELLER, "yanwen/line", -DRIFT_DAYS_AGO),),
        outages=(Outage(Source.YUNEXPRESS, -20), Outage(Source.SEVENTEEN_TRACK, -12)),
    )


def small_config() -> ScenarioConfig:
    """The acceptance test's scenario: every source and failure mode, a few hundred orders."""
    sellers = (
        Seller(
            "T1HEALTHY",
            (
                Lane("SG", "Toys & Games", 3, (("yanwen/line", 0.5), ("yunexpress/line", 0.5))),
                Lane("US", "Electronics", 2, (("china-post/epacket", 0.6), ("4px/standard", 0.4))),
                Lane("DE", "Home & Kitchen", 1, (("dhl-ecommerce/packet", 1.0),), ship_from="DE"),
            ),
        ),
        Seller(
            "T2MIXED",
            (
                Lane(
                    "AE",
                    "Beauty",
                    3,
                    (("china-post/surface", 0.4), ("china-post/registered", 0.3), ("sunyou/economy", 0.3)),
                    values=ValueMix(below=0.7, at=0.1, above=0.2),
                ),
                Lane("MX", "Sports & Outdoors", 1.5, (("sfc/priority", 0.7), ("fast-cargo/express", 0.3))),
                Lane("JP", "Beauty", 1.5, (("yanwen/line", 1.0),), values=ValueMix(0.5, 0.2, 0.3)),
            ),
        ),
        Seller(
            "T3DRIFT",
            (Lane("SA", "Home & Kitchen", 3, (("yanwen/line", 0.6), ("yunexpress/line", 0.4))),),
            role="drifting",
        ),
    )
    return ScenarioConfig(
        sellers=sellers,
        cancel_rate=0.04,
        combined_rate=0.08,
        duplicate_push_rate=0.15,
        late_push_rate=0.1,
        stops=(CarrierStop("T3DRIFT", "yanwen/line", -12),),
        outages=(Outage(Source.CHINA_POST_EMS, -30), Outage(Source.AFTERSHIP, -15)),
        # More of the cases where a rule decides: parcels whose only records are a label and
        # an undocumented code, and full-tracking parcels that never get a delivery scan.
        failures=(
            ("china-post/registered", FailureRates(no_pickup=0.12, lost_in_transit=0.08, unknown_code=0.6)),
            ("yanwen/line", FailureRates(no_pickup=0.05, no_delivery_scan=0.08, unknown_code=0.4)),
            ("yunexpress/line", FailureRates(no_pickup=0.03, lost_in_transit=0.05, unknown_code=0.3)),
        ),
    )


PRESETS = {"demo": demo_config, "small": small_config}
