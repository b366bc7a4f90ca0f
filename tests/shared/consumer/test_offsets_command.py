"""``python -m services.<scorer|notifier> offsets show|reset`` is wired into both entry
points (moving offsets of stopped partitions: test_upkeep.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.kafka import ensure_topics
from shared.topics import TopicSpec
from tools.localstack import TansuBroker


@pytest.mark.parametrize("service", ["scorer", "notifier"])
def test_the_offsets_command_is_wired_into_both_entry_points(
    service: str, kafka_broker: TansuBroker, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.notifier import __main__ as notifier_main
    from services.notifier.settings import NotifierSettings
    from services.scorer import __main__ as scorer_main
    from services.scorer.settings import ScorerSettings
    from shared.db import upgrade_database
    from shared.server import service_main

    module: Any = scorer_main if service == "scorer" else notifier_main
    settings_type: Any = ScorerSettings if service == "scorer" else NotifierSettings
    url = f"sqlite+aiosqlite:///{tmp_path}/{service}.db"
    upgrade_database(module.MIGRATIONS_DIR, url)
    settings = settings_type(database_url=url, kafka_bootstrap=kafka_broker.bootstrap)
    target = module.consumer_offsets(settings)
    asyncio.run(ensure_topics(settings, [TopicSpec(topic) for topic in target.topics]))
    with pytest.raises(SystemExit) as done:
        service_main(
            lambda: settings,
            lambda _settings: None,  # type: ignore[arg-type,return-value]  # exits before an app is built
            module.MIGRATIONS_DIR,
            ["offsets", "show"],
            module.consumer_offsets,
        )
    assert done.value.code == 0
    shown = capsys.readouterr().out
    assert all(f"{topic}:0" in shown for topic in target.topics), shown
