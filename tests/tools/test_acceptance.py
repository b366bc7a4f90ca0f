"""Issue 7's acceptance test: a seeded 45-day scenario replayed through the real ingest and
scorer (``python -m services.<name>`` subprocesses, a Tansu broker of the test's own, SQLite
and PostgreSQL); the scorer's ``GET /v1/sellers/{id}/vtr`` must match the simulator's
independent ground truth exactly, for every seller-category."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tools.localstack import TansuBroker
from tools.simulate.catalog import Source
from tools.simulate.driver import Driver, ScorerClient, compare_with_scorer, wait_for_agreement
from tools.simulate.plan import replay_plan
from tools.simulate.presets import small_config
from tools.simulate.scenario import generate
from tools.simulate.stack import ServiceProcess
from tools.simulate.webhooks import WebhookSecrets

pytestmark = pytest.mark.slow

SECRETS = WebhookSecrets(
    chinapost_sm4_key_hex="00112233445566778899aabbccddeeff",
    chinapost_digest_key="test-digest-key",
    yunexpress_secret="test-yunexpress-secret",
    yanwen_token="test-yanwen-token",
    seventeen_track_api_key="test-17track-key",
    aftership_secret="test-aftership-secret",
)
API_KEY = "test-acceptance-key"


@pytest.fixture
def services(fresh_broker: TansuBroker, database_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    common = {
        "VTR_KAFKA_BOOTSTRAP": fresh_broker.bootstrap,
        "VTR_API_KEYS": API_KEY,
        "VTR_KAFKA_TOPIC_PARTITIONS": "3",
        "VTR_LOG_LEVEL": "WARNING",
    }
    ingest_env = {
        **common,
        "VTR_CHINAPOST_SM4_KEY": SECRETS.chinapost_sm4_key_hex,
        "VTR_CHINAPOST_DIGEST_KEY": SECRETS.chinapost_digest_key,
        "VTR_YUNEXPRESS_SECRET": SECRETS.yunexpress_secret,
        "VTR_YANWEN_TOKEN": SECRETS.yanwen_token,
        "VTR_17TRACK_API_KEY": SECRETS.seventeen_track_api_key,
        "VTR_AFTERSHIP_SECRET": SECRETS.aftership_secret,
    }
    scorer_env = {**common, "VTR_DATABASE_URL": database_url, "VTR_CONSUMER_GROUP_ID": f"sim-{uuid.uuid4().hex[:8]}"}
    ingest = ServiceProcess("ingest", ingest_env, tmp_path / "ingest.log").start()
    try:
        scorer = ServiceProcess("scorer", scorer_env, tmp_path / "scorer.log").start()
        try:
            yield ingest.url, scorer.url
        finally:
            scorer.stop()
    finally:
        ingest.stop()


async def test_ground_truth_and_scorer_agree_after_a_45_day_replay(services: tuple[str, str]) -> None:
    ingest_url, scorer_url = services
    known_at = datetime.now(UTC).replace(microsecond=0)
    scenario = generate(small_config(), seed=20261126, today=known_at.date())
    steps = replay_plan(scenario, known_at)

    async with Driver(ingest_url, API_KEY, SECRETS, concurrency=8) as driver:
        stats = await driver.replay(steps)
    assert set(stats.pushes) == {source.value for source in Source}
    assert stats.cancellations > 0

    scorer = ScorerClient(scorer_url, API_KEY)
    try:
        truth, mismatches = await wait_for_agreement(scenario, scorer, scenario.today, known_at, timeout_seconds=90)
    finally:
        await scorer.aclose()
    assert len(truth) == len(scenario.seller_categories())
    # The scenario is not trivially all-valid: some categories are below the floor.
    assert any(tally.vtr is not None and tally.vtr < 0.95 for tally in truth.values())
    assert mismatches == [], "\n".join(str(mismatch) for mismatch in mismatches)

    # A past day is reproduced from today's knowledge: scans count by when they occurred.
    scorer = ScorerClient(scorer_url, API_KEY)
    try:
        for days_back in (1, 9, 20):
            as_of = scenario.today - timedelta(days=days_back)
            _, mismatches = await compare_with_scorer(scenario, scorer, as_of, known_at)
            assert mismatches == [], f"as_of {as_of}:\n" + "\n".join(str(mismatch) for mismatch in mismatches)
    finally:
        await scorer.aclose()
