"""Cold start on a real database: the model is rebuilt when its input changed enough, every
score says which build priced it, and a category on lanes the model has not learnt is not
put above WATCH by a forecast from priors (docs/forecast.md section 7)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scorer.app import create_app
from services.scorer.domain.scores import CategoryScore
from services.scorer.runtime.service import ScorerService
from services.scorer.settings import ScorerSettings
from services.scorer.storage.plan import apply_records
from shared.schemas import CanonicalStatus
from tests.scorer.conftest import NOW, TODAY, event, record, shipment

AUTH = {"Authorization": "Bearer test-key"}
NAIVE_NOW = NOW.replace(tzinfo=None)


def refreshes(reason: str) -> float:
    return REGISTRY.get_sample_value("vtr_scorer_model_refreshes_total", {"reason": reason}) or 0.0


def window_history(seller: str = "seller-1", count: int = 100) -> list[object]:
    """``count`` packages in the window, each scanned and delivered: 100% today."""
    messages: list[object] = []
    for i in range(count):
        number = f"LT{seller[-1]}{i:012d}CN"
        messages.append(shipment(f"{seller}-ok-{i}", seller_id=seller, tracking_number=number))
        messages.append(event(tracking_number=number, occurred_at=NOW - timedelta(days=9)))
        messages.append(event(CanonicalStatus.DELIVERED, tracking_number=number, occurred_at=NOW - timedelta(days=4)))
    return messages


def unscanned_on_a_new_lane(count: int) -> list[object]:
    """Pending parcels of a service nobody shipped with before, unscanned for 9 days, due
    tomorrow: from the priors they look lost."""
    return [
        shipment(
            f"new-{i}",
            service="Economy Air",
            tracking_number=f"EA{i:011d}CN",
            promised=TODAY + timedelta(days=1),
            confirmed_at=NOW - timedelta(days=9),
        )
        for i in range(count)
    ]


class Clock:
    def __init__(self) -> None:
        self.now = NAIVE_NOW

    def __call__(self) -> datetime:
        return self.now


class Scorer(ScorerService):
    """The service with its consumer's lag set by the test (behind a backlog or not)."""

    behind = False

    def caught_up(self) -> bool:
        return not self.behind


@pytest.fixture
async def service(scorer_engine: AsyncEngine, database_url: str) -> AsyncIterator[Scorer]:
    settings = ScorerSettings(database_url=database_url, api_keys="test-key")  # type: ignore[arg-type]
    scorer = Scorer(settings, scorer_engine, today=lambda: TODAY, now=Clock())
    yield scorer


async def feed(service: Scorer, messages: list[object]) -> None:
    records = [record(message) for message in messages]  # type: ignore[arg-type]
    async with service.engine.begin() as connection:
        await apply_records(connection, service.evaluator, records, TODAY, NAIVE_NOW)
    service.batches.records_applied += len(records)


async def toys(service: ScorerService) -> CategoryScore:
    async with service.engine.connect() as connection:
        [category] = await service.scoring.scores(connection, "seller-1", TODAY)
    return category


async def test_a_forecast_from_priors_stays_at_watch_until_the_model_has_learnt_the_lane(service: Scorer) -> None:
    await feed(service, [*window_history(), *unscanned_on_a_new_lane(30)])
    before = await toys(service)
    assert before.model is not None and before.model.built_at is None and before.model.packages == 0
    assert not before.model.lanes_learnt and before.model.unlearnt_pending == 30
    assert before.score.vtr == 1.0 and before.model.today_level.value == "OK"
    # The forecast alone says AT_RISK (30 parcels that look lost against 100); capped.
    assert (before.score.breach_probability or 0.0) > 0.3
    assert before.level.value == "WATCH"
    first = refreshes("first")
    await service.clock.run_once()
    assert refreshes("first") == first + 1
    after = await toys(service)
    assert after.model is not None
    assert after.model.lanes_learnt and after.model.packages == 130
    assert after.model.built_at == NOW
    assert after.level.value == "AT_RISK"
    snapshot = after.snapshot("seller-1", TODAY, caught_up=True)
    assert snapshot.model == after.model


async def test_the_model_is_rebuilt_when_a_backlog_drains_not_only_on_its_timer(service: Scorer) -> None:
    clock: Clock = service._now  # type: ignore[assignment]
    await service.clock.run_once()  # a fresh deployment: built from nothing
    assert service.evaluator.build.packages == 0
    service.behind = True
    await feed(service, window_history())
    clock.now += timedelta(seconds=90)
    await service.clock.run_once()  # behind: only the timer would rebuild
    assert service.evaluator.build.packages == 0
    drained = refreshes("backlog_drained")
    service.behind = False
    await service.clock.run_once()
    assert refreshes("backlog_drained") == drained + 1
    assert service.evaluator.build.packages == 100
    # A few more records: under 10% of 100 packages, no rebuild; a new lane of 20: rebuilt.
    await feed(service, window_history("seller-2", 2))
    clock.now += timedelta(seconds=90)
    await service.clock.run_once()
    assert service.evaluator.build.packages == 100
    lanes = refreshes("new_lanes")
    await feed(service, unscanned_on_a_new_lane(20))
    await service.clock.run_once()
    assert refreshes("new_lanes") == lanes + 1
    assert service.evaluator.build.packages == 122


async def test_get_vtr_carries_the_model_block(scorer_engine: AsyncEngine, database_url: str) -> None:
    scorer = Scorer(
        ScorerSettings(database_url=database_url, api_keys="test-key"),  # type: ignore[arg-type]
        scorer_engine,
        today=lambda: TODAY,
        now=Clock(),
    )
    await feed(scorer, window_history())
    settings = ScorerSettings(database_url=database_url, api_keys="test-key")  # type: ignore[arg-type]
    app = create_app(settings, today=lambda: TODAY, background=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scorer") as client:
        response = await client.get("/v1/sellers/seller-1/vtr", headers=AUTH)
    await app.state.service.engine.dispose()
    assert response.status_code == 200
    [category] = response.json()["categories"]
    assert category["model"] == {
        "built_at": None,
        "packages": 0,
        "lanes_learnt": True,  # nothing pending: nothing priced from priors
        "unlearnt_pending": 0,
        "today_level": "OK",
    }
