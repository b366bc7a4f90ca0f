"""``python -m services.scorer [serve|migrate]``; ``python -m services.scorer remap-codes``
gives scans stored as UNKNOWN the status today's code table maps them to (remap.py)."""

import sys
from pathlib import Path

from services.scorer.app import create_app
from services.scorer.settings import ScorerSettings
from shared.server import service_main

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

if __name__ == "__main__":
    if sys.argv[1:2] == ["remap-codes"]:
        from services.scorer.remap import main

        sys.exit(main(sys.argv[2:]))
    service_main(ScorerSettings, create_app, MIGRATIONS_DIR)  # type: ignore[arg-type]
