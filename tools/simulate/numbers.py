"""Tracking numbers in each carrier's own shape (a malformed number would be a risk flag,
so the simulator only makes well-formed ones)."""

from __future__ import annotations

import random

from tools.simulate.catalog import NumberFormat

_S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)


def s10_check_digit(serial: str) -> int:
    """UPU S10 mod-11 check digit of an 8-digit serial."""
    remainder = 11 - sum(int(digit) * weight for digit, weight in zip(serial, _S10_WEIGHTS, strict=True)) % 11
    return {10: 0, 11: 5}.get(remainder, remainder)


def s10(prefix: str, serial: int) -> str:
    digits = f"{serial:08d}"
    return f"{prefix}{digits}{s10_check_digit(digits)}CN"


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(count))


#: S10 service indicators per China Post product family.
S10_PREFIXES = ("LX", "LY", "RR", "RX", "UB", "LZ")


def make_tracking_number(number_format: NumberFormat, rng: random.Random) -> str:
    factories = {
        NumberFormat.S10: lambda: s10(rng.choice(S10_PREFIXES), rng.randrange(10**8)),
        NumberFormat.YUNEXPRESS: lambda: "YT" + _digits(rng, 16),
        NumberFormat.YANWEN: lambda: "UG" + _digits(rng, 9) + "YP",
        NumberFormat.FOURPX: lambda: "4PX3" + _digits(rng, 12) + "CN",
        NumberFormat.SFC: lambda: "SFC3" + _digits(rng, 13),
        NumberFormat.SUNYOU: lambda: "SYAE" + _digits(rng, 10),
        NumberFormat.DHL_ECOMMERCE: lambda: "GM" + _digits(rng, 16),
        NumberFormat.GENERIC: lambda: "FC" + _digits(rng, 12),
    }
    return factories[number_format]()
