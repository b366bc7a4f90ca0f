"""``python -m services.ingest``: serve the ingest API (it keeps no database)."""

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.server import service_main

if __name__ == "__main__":
    service_main(IngestSettings, create_app)  # type: ignore[arg-type]
