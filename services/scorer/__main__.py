"""``python -m services.scorer [serve|migrate]``; ``python -m services.scorer remap-codes``
gives scans stored as UNKNOWN the status today's code table maps them to (remap.py)."""

import sys

from services.scorer.app import MIGRATIONS_DIR, create_app
from services.scorer.settings import ScorerSettings
from services.scorer.storage.schema import offsets
from shared.consumer.offsets_command import ConsumerOffsets
from shared.server import service_main
from shared.topics import SHIPMENTS, TRACKING_EVENTS


def consumer_offsets(settings: ScorerSettings) -> ConsumerOffsets:
    return ConsumerOffsets(settings.consumer_group_id, [SHIPMENTS, TRACKING_EVENTS], offsets)


if __name__ == "__main__":
    if sys.argv[1:2] == ["remap-codes"]:
        from services.scorer.remap import main

        sys.exit(main(sys.argv[2:]))
    service_main(ScorerSettings, create_app, MIGRATIONS_DIR, consumer_offsets=consumer_offsets)  # type: ignore[arg-type]
