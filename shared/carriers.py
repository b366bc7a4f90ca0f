"""Carrier identities shared by the services: the slugs vtrwatch uses, and the names
sellers upload to Amazon that map to them.

Whether a carrier is *integrated* with Amazon for a marketplace is scoring policy and
lives in the scorer's data; this table only says which carrier a name means.
"""

from __future__ import annotations

import re

#: slug -> names a seller may upload for it (compared case-insensitively, spaces and
#: punctuation ignored). Add a name here to recognise a new spelling.
CARRIER_NAMES: dict[str, tuple[str, ...]] = {
    "china-post": ("China Post", "ChinaPost", "China Post EMS", "EMS", "CNPOST", "中国邮政", "中国邮政速递"),
    "yunexpress": ("YunExpress", "Yun Express", "YUN", "云途", "云途物流"),
    "yanwen": ("Yanwen", "YANWEN", "Yan Wen", "燕文", "燕文物流"),
    "4px": ("4PX", "4PX Worldwide Express", "递四方"),
    "sf-express": ("SF Express", "SF", "顺丰"),
    "sfc": ("SFC", "SFC Service", "三态速递"),
    "dhl-ecommerce": ("DHL eCommerce", "DHL Global Mail", "DHL eCommerce Asia"),
    "sunyou": ("Sunyou", "SunYou", "顺友"),
    "wanbexpress": ("WanbExpress", "Wanb Express", "万邦"),
    "ydh": ("YDH", "义达"),
    "ups": ("UPS",),
    "fedex": ("FedEx", "Fedex Express"),
    "dhl": ("DHL", "DHL Express"),
    "usps": ("USPS",),
    "royal-mail": ("Royal Mail",),
    "japan-post": ("Japan Post", "JP Post"),
    "singpost": ("SingPost", "Singapore Post"),
    "aramex": ("Aramex",),
    "australia-post": ("Australia Post", "AusPost"),
}


#: slug -> the carrier's name exactly as Amazon's list of integrated carriers spells it.
#: Amazon matches a confirmed carrier name against its list case-sensitively (a name that
#: differs only in case is recorded as "Other", which is not a valid tracking), so a name
#: read back from Amazon (SP-API orders) is checked against these spellings exactly, while
#: ERP confirmations keep the forgiving match of :func:`carrier_slug`.
AMAZON_CARRIER_SPELLINGS: dict[str, str] = {
    "china-post": "China Post",
    "yunexpress": "Yun Express",
    "yanwen": "Yanwen",
    "4px": "4PX",
    "sf-express": "SF Express",
    "sfc": "SFC",
    "dhl-ecommerce": "DHL eCommerce",
    "sunyou": "Sunyou",
    "wanbexpress": "WanbExpress",
    "ydh": "YDH",
    "ups": "UPS",
    "fedex": "FedEx",
    "dhl": "DHL",
    "usps": "USPS",
    "royal-mail": "Royal Mail",
    "japan-post": "Japan Post",
    "singpost": "Singapore Post",
    "aramex": "Aramex",
    "australia-post": "Australia Post",
}
_BY_AMAZON_SPELLING = {name: slug for slug, name in AMAZON_CARRIER_SPELLINGS.items()}


def amazon_carrier_slug(name: str) -> str | None:
    """The slug of a carrier name exactly as Amazon's list spells it, else None."""
    return _BY_AMAZON_SPELLING.get(name.strip())


def _squash(name: str) -> str:
    return re.sub(r"[\s_\-.]+", "", name).casefold()


_BY_SQUASHED_NAME: dict[str, str] = {
    _squash(alias): slug for slug, aliases in CARRIER_NAMES.items() for alias in (slug, *aliases)
}


def carrier_display_name(slug: str) -> str:
    """The carrier's usual name for people (the first in :data:`CARRIER_NAMES`), or the slug."""
    names = CARRIER_NAMES.get(slug)
    return names[0] if names else slug


def carrier_slug(name: str) -> str | None:
    """The slug of the carrier a seller-uploaded name means, or None if unknown."""
    return _BY_SQUASHED_NAME.get(_squash(name))
