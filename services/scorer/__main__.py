from pathlib import Path

from services.scorer.app import create_app
from services.scorer.settings import ScorerSettings
from shared.server import service_main

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

if __name__ == "__main__":
    service_main(ScorerSettings, create_app, MIGRATIONS_DIR)  # type: ignore[arg-type]
