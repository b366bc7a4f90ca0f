"""Revocation reaches two running instances of each service within 10 s, without a restart."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from tests.credentials.stack import (
    SERVICES,
    credentials_environment,
    migrate,
    probe,
    revoke,
    running,
    seller_key,
    settings_for,
    wait_until,
)
from tools.localstack import TansuBroker

SELLER = "A1REVOKE"


async def test_a_revoked_key_is_refused_by_every_instance_within_ten_seconds(
    kafka_broker: TansuBroker, tmp_path: object
) -> None:
    with credentials_environment(kafka_broker) as env:
        async with AsyncExitStack() as stack:
            instances = []
            for service in SERVICES:
                for number in (1, 2):
                    url = f"sqlite+aiosqlite:///{tmp_path}/{service}-{number}.db"
                    await asyncio.to_thread(migrate, service, url)
                    settings = settings_for(service, env, url)
                    instances.append(await stack.enter_async_context(running(service, settings)))
            issued = await asyncio.to_thread(seller_key, SELLER)
            arrived = await wait_until(instances, issued, SELLER, accepted=True, within=60)
            assert 401 not in [await probe(instance, issued, SELLER) for instance in instances]
            await asyncio.to_thread(revoke, issued.key_id)
            seen = await wait_until(instances, issued, SELLER, accepted=False, within=10.0)
            print(f"issued key accepted by 6 instances after {arrived:.2f} s; revocation seen after {seen:.2f} s")
            assert {await probe(instance, issued, SELLER) for instance in instances} == {401}
