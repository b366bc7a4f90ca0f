"""``make evaluate`` through the real services: a broker of its own, ``python -m
services.ingest`` and ``python -m services.scorer`` as subprocesses, the scenario replayed
through the signed webhooks and ``POST /v1/shipments`` (tools/simulate/driver.py), and the
scores read back from ``GET /v1/sellers/{id}/vtr`` and ``GET .../shipments``.

Slower than the in-process run (every request goes through HTTP, Kafka and the clock job's
real timers), so it is an option (``--through-services``), not the default. The scorer's
clock runs every 2 seconds and rebuilds its model every 10, and the figures are read once
the counts agree with the truth and two model rebuilds have passed; with ``--live`` the
scorer keeps its default timers (and its own triggers) and the figures are read
``LIVE_READ_SECONDS`` after the last request, as a seller would read them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tools.evaluate.run import LIVE_READ_SECONDS, Case, Outcome, true_leads
from tools.localstack import TansuBroker
from tools.simulate.driver import Driver, Mismatch, ScorerClient, wait_for_agreement
from tools.simulate.plan import replay_plan
from tools.simulate.scenario import Scenario
from tools.simulate.stack import ServiceProcess
from tools.simulate.truth import package_valid, vtr_by_key
from tools.simulate.webhooks import WebhookSecrets

API_KEY = "dev-api-key"
CLOCK_SECONDS = 2.0
MODEL_REFRESH_SECONDS = 10.0
SERVICES_LIVE = f"services, live {LIVE_READ_SECONDS:.0f} s"


async def _pending(client: httpx.AsyncClient, seller_id: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    cursor: str | None = None
    while True:
        params = {"state": "pending", "limit": "500", **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"/v1/sellers/{seller_id}/shipments", params=params)
        if response.status_code == 404:
            return found
        response.raise_for_status()
        page = response.json()
        found.extend(page["packages"])
        cursor = page.get("next_cursor")
        if not cursor:
            return found


async def evaluate_through_services(
    family: str, seed: int, scenario: Scenario, database_url: str, directory: Path, live: bool = False
) -> Outcome:
    known_at = datetime.now(UTC).replace(microsecond=0)
    today = scenario.today
    broker = TansuBroker(log_path=directory / "tansu.log").start()
    started: list[ServiceProcess] = []
    outcome = Outcome()
    try:
        env = {"VTR_KAFKA_BOOTSTRAP": broker.bootstrap, "VTR_LOG_LEVEL": "WARNING", "VTR_KAFKA_TOPIC_PARTITIONS": "3"}
        started.append(ServiceProcess("ingest", env, directory / "ingest.log").start())
        timers = {
            "VTR_CLOCK_INTERVAL_SECONDS": str(CLOCK_SECONDS),
            "VTR_MODEL_REFRESH_SECONDS": str(MODEL_REFRESH_SECONDS),
        }
        scorer_env = {**env, "VTR_DATABASE_URL": database_url, **({} if live else timers)}
        scorer = ServiceProcess("scorer", scorer_env, directory / "scorer.log").start()
        started.append(scorer)
        async with Driver(started[0].url, API_KEY, WebhookSecrets.from_ingest_settings(), concurrency=8) as driver:
            await driver.replay(replay_plan(scenario, known_at))
        reader = ScorerClient(scorer.url, API_KEY)
        try:
            mismatches: list[Mismatch] = []
            if live:
                await asyncio.sleep(LIVE_READ_SECONDS)
            else:
                _, mismatches = await wait_for_agreement(scenario, reader, today, known_at, timeout_seconds=300)
                # Two model rebuilds after the last record, each followed by its reviews.
                await asyncio.sleep(2 * MODEL_REFRESH_SECONDS + 2 * CLOCK_SECONDS)
            leads = true_leads(scenario, today)
            known_truth = vtr_by_key(scenario, today, known_at)
            by_order = {package.order_id: package for package in scenario.packages}
            async with httpx.AsyncClient(
                base_url=scorer.url, timeout=30.0, headers={"authorization": f"Bearer {API_KEY}"}
            ) as client:
                for seller in scenario.config.sellers:
                    answer = await reader.vtr(seller.seller_id) or {"categories": []}
                    for category in answer["categories"]:
                        key = (seller.seller_id, category["marketplace"], category["category"])
                        if key not in leads:
                            continue
                        truth = known_truth.get(key)
                        outcome.cases.append(
                            Case(
                                family=family,
                                seed=seed,
                                order=SERVICES_LIVE if live else "services",
                                seller_id=key[0],
                                marketplace=key[1],
                                category=key[2],
                                role=seller.role,
                                true_lead=leads[key],
                                level=category["level"],
                                days_to_breach=category["days_to_breach"],
                                breach_probability=category.get("breach_probability"),
                                counts_match=truth is not None
                                and (category["total"], category["valid"]) == (truth.total, truth.valid),
                                total=int(category["total"]),
                                vtr=category["vtr"],
                                model=category.get("model"),
                            )
                        )
                    for package in await _pending(client, seller.seller_id):
                        order = by_order.get(str(package["order_id"]))
                        if order is None or order.promised_date < today:
                            continue
                        valid = package_valid(scenario, order, order.promised_date + timedelta(days=1))
                        outcome.packages.append((float(package["probability_valid"]), valid))  # type: ignore[arg-type]
            if mismatches:
                print(f"{family} seed {seed}: {len(mismatches)} seller-categories disagree with the truth")
        finally:
            await reader.aclose()
    finally:
        for service in reversed(started):
            service.stop()
        broker.stop()
    return outcome
