"""Print a signed link to a seller's console (what the notifier puts in its messages).

    .venv/bin/python -m tools.console_link A3GZBEAUTY [--marketplace AE --category Beauty]

Signs with ``VTR_CONSOLE_SECRET`` and the notifier's link base (``VTR_CONSOLE_URL``, else
``VTR_SCORER_URL``), read from the environment as the notifier reads them; on a laptop the
embedded defaults match ``make run``.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from services.notifier.settings import NotifierSettings
from shared.console_links import ConsoleLinks


def console_links(settings: NotifierSettings | None = None, base: str | None = None) -> ConsoleLinks:
    settings = settings or NotifierSettings()
    return ConsoleLinks(
        base=base or settings.console_base,
        secret=settings.console_secret.get_secret_value().encode(),
        valid_for=timedelta(days=settings.console_link_days),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("seller_id")
    parser.add_argument("--marketplace")
    parser.add_argument("--category")
    parser.add_argument("--base", help="scheme and host of the console (default: the notifier's setting)")
    args = parser.parse_args(argv)
    links = console_links(base=args.base)
    print(links.link(args.seller_id, datetime.now(UTC), marketplace=args.marketplace, category=args.category))


if __name__ == "__main__":
    main()
