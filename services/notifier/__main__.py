from services.notifier.app import MIGRATIONS_DIR, create_app
from services.notifier.db import consumer_offsets as consumer_offsets_table
from services.notifier.settings import NotifierSettings
from shared.consumer.offsets_command import ConsumerOffsets
from shared.server import service_main


def consumer_offsets(settings: NotifierSettings) -> ConsumerOffsets:
    return ConsumerOffsets(settings.consumer_group, [settings.scores_topic], consumer_offsets_table)


if __name__ == "__main__":
    service_main(NotifierSettings, create_app, MIGRATIONS_DIR, consumer_offsets=consumer_offsets)  # type: ignore[arg-type]
