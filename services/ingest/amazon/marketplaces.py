"""Amazon marketplace ids -> what vtrwatch needs of each: its two-letter marketplace code
(as sellers' ERPs and the scorer name it), its SP-API region and the zone in which Amazon
states its local dates. Data only (Amazon's "Marketplace IDs" page)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

Region = Literal["na", "eu", "fe"]
REGIONS: tuple[Region, ...] = ("na", "eu", "fe")


@dataclass(frozen=True)
class Marketplace:
    marketplace_id: str
    code: str
    region: Region
    zone: ZoneInfo


def _table(rows: list[tuple[str, str, Region, str]]) -> dict[str, Marketplace]:
    return {row[0]: Marketplace(row[0], row[1], row[2], ZoneInfo(row[3])) for row in rows}


#: marketplace id -> marketplace. The code is what vtrwatch uses everywhere: "UK" for
#: amazon.co.uk (as the policy's thresholds and the sellers' ERPs name it).
MARKETPLACES: dict[str, Marketplace] = _table(
    [
        ("ATVPDKIKX0DER", "US", "na", "America/Los_Angeles"),
        ("A2EUQ1WTGCTBG2", "CA", "na", "America/Los_Angeles"),
        ("A1AM78C64UM0Y8", "MX", "na", "America/Mexico_City"),
        ("A2Q3Y263D00KWC", "BR", "na", "America/Sao_Paulo"),
        ("A1F83G8C2ARO7P", "UK", "eu", "Europe/London"),
        ("A1PA6795UKMFR9", "DE", "eu", "Europe/Berlin"),
        ("A13V1IB3VIYZZH", "FR", "eu", "Europe/Paris"),
        ("APJ6JRA9NG5V4", "IT", "eu", "Europe/Rome"),
        ("A1RKKUPIHCS9HS", "ES", "eu", "Europe/Madrid"),
        ("A1805IZSGTT6HS", "NL", "eu", "Europe/Amsterdam"),
        ("A2NODRKZP88ZB9", "SE", "eu", "Europe/Stockholm"),
        ("A1C3SOZRARQ6R3", "PL", "eu", "Europe/Warsaw"),
        ("AMEN7PMS3EDWL", "BE", "eu", "Europe/Brussels"),
        ("A28R8C7NBKEWEA", "IE", "eu", "Europe/Dublin"),
        ("A33AVAJ2PDY3EV", "TR", "eu", "Europe/Istanbul"),
        ("A2VIGQ35RCS4UG", "AE", "eu", "Asia/Dubai"),
        ("A17E79C6D8DWNP", "SA", "eu", "Asia/Riyadh"),
        ("ARBP9OOSHTCHU", "EG", "eu", "Africa/Cairo"),
        ("A21TJRUUN4KGV", "IN", "eu", "Asia/Kolkata"),
        ("A19VAU5U5O7RUS", "SG", "fe", "Asia/Singapore"),
        ("A39IBJ37TRP1C6", "AU", "fe", "Australia/Sydney"),
        ("A1VC38T7YXB528", "JP", "fe", "Asia/Tokyo"),
    ]
)


def marketplace_ids(region: Region) -> list[str]:
    return [m.marketplace_id for m in MARKETPLACES.values() if m.region == region]
