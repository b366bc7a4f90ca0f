from __future__ import annotations

import uuid

import pytest

from shared.settings import ServiceSettings
from tools.localstack import TansuBroker


@pytest.fixture
def topic_and_group(kafka_broker: TansuBroker) -> tuple[ServiceSettings, str, str]:
    """Settings for quick rebalances on the shared broker, and a topic and group of the test's own."""
    settings = ServiceSettings(
        kafka_bootstrap=kafka_broker.bootstrap,
        kafka_topic_partitions=3,
        kafka_session_timeout_ms=3000,
        kafka_heartbeat_interval_ms=300,
    )
    suffix = uuid.uuid4().hex[:8]
    return settings, f"test.tx.{suffix}", f"group-{suffix}"
