from pathlib import Path

from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings
from shared.server import service_main

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

if __name__ == "__main__":
    service_main(NotifierSettings, create_app, MIGRATIONS_DIR)  # type: ignore[arg-type]
