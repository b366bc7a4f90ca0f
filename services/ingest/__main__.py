"""``python -m services.ingest``: serve the ingest API (it keeps no database);
``python -m services.ingest replay-deadletters [--origin ...] [--since ...] [--dry-run]``
re-parses parked webhook bodies (replay.py); ``python -m services.ingest registrar``
registers confirmed numbers with the aggregators (registration.py); ``python -m
services.ingest poll-yanwen`` polls Yanwen for open parcels (yanwen_polling.py); ``python
-m services.ingest amazon worker|connect|disconnect|status`` reads connected sellers' Amazon
data and manages their connections (amazon/cli.py)."""

import sys

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.http_protocol import OneWriteHttpToolsProtocol
from shared.server import service_main

if __name__ == "__main__":
    if sys.argv[1:2] == ["replay-deadletters"]:
        from services.ingest.replay import main

        sys.exit(main(sys.argv[2:]))
    if sys.argv[1:2] == ["registrar"]:
        from services.ingest.registration import main as registrar

        sys.exit(registrar())
    if sys.argv[1:2] == ["poll-yanwen"]:
        from services.ingest.yanwen_polling import main as poll_yanwen

        sys.exit(poll_yanwen())
    if sys.argv[1:2] == ["amazon"]:
        from services.ingest.amazon.cli import main as amazon

        sys.exit(amazon(sys.argv[2:]))
    service_main(IngestSettings, create_app, http=OneWriteHttpToolsProtocol)  # type: ignore[arg-type]
