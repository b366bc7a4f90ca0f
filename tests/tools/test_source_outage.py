"""A push-source outage on a real database: 17TRACK (4PX and SFC) delivers no scan for a
day and a half while the other carriers scan. The scorer reads it as the source's outage,
exports it for the operators, and warns no seller for it (``source_outage``, seed 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from services.scorer.settings import ScorerSettings
from services.scorer.storage.schema import metadata
from shared.db import create_engine
from shared.schemas import Level, Reason
from tools.evaluate.families import FAMILIES
from tools.evaluate.run import FeedingScorer, apply_messages, messages, noon, true_leads
from tools.simulate.scenario import generate


async def test_a_17track_outage_is_the_source_s_not_its_carriers_and_warns_nobody(database_url: str) -> None:
    today = datetime.now(UTC).date()
    scenario = generate(FAMILIES["source_outage"](2, 12.0), seed=2, today=today)
    assert [outage.day for outage in scenario.config.outages] == [-1, 0]
    now = noon(today).replace(tzinfo=None)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        settings = ScorerSettings(database_url=database_url, api_keys="test")  # type: ignore[arg-type]
        service = FeedingScorer(settings, engine, today=lambda: today, now=lambda: now)
        shipments, events = messages(scenario, noon(today))
        yesterday = today - timedelta(days=1)
        assert not any(e.source == "17track" and e.occurred_at.date() >= yesterday for e in events)
        await apply_messages(engine, service, [*events, *shipments], today, now)
        await service.clock.run_once(refresh=True)

        health = service.evaluator.model.state.health
        settings_of_model = service.evaluator.model.settings
        behind = {key for key, entry in health.items() if entry.source_outage == "17track"}
        assert behind == {("4px", "CN"), ("sfc", "CN")}
        assert all(health[key].silent_hours >= 30 and not health[key].silent(settings_of_model) for key in behind)
        assert not any(entry.silent(settings_of_model) for entry in health.values())
        assert REGISTRY.get_sample_value("vtr_scorer_source_outage", {"source": "17track"}) == 1
        assert REGISTRY.get_sample_value("vtr_scorer_source_outage", {"source": "aftership"}) == 0
        assert REGISTRY.get_sample_value("vtr_scorer_source_carriers", {"source": "17track"}) == 2

        leads = true_leads(scenario, today)
        async with engine.connect() as connection:
            for seller in scenario.config.sellers:
                for category in await service.scoring.scores(connection, seller.seller_id, today):
                    key = (seller.seller_id, category.marketplace, category.category)
                    assert leads[key] is None  # nobody breaches: only the pushes stopped
                    assert category.level.severity < Level.AT_RISK.severity, key
                    assert Reason.CARRIER_SILENT.value not in category.score.pending_reasons
                    assert category.carrier_health == ()
    finally:
        await engine.dispose()
