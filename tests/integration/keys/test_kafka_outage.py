"""Kafka stopped while keys are created and started again: every event arrives."""

import asyncio
import subprocess
import time

import pytest

from tests.fixtures.directory import Tenant
from tests.fixtures.keys import create_key
from tests.fixtures.processes import ROOT

KAFKA = ROOT / "deploy/local/kafka.sh"


def kafka(command: str) -> None:
    subprocess.run(["bash", str(KAFKA), command], check=True, capture_output=True, timeout=180)


@pytest.mark.slow
async def test_every_event_arrives_after_kafka_comes_back(as_admin, tenant: Tenant, event_log, http):
    admin = as_admin(tenant.admins[0])
    before = await create_key(admin, tenant.id)
    await event_log.wait_for(lambda _: event_log.about(before["id"]))
    await asyncio.to_thread(kafka, "stop")
    try:
        started = time.monotonic()
        during = [await create_key(admin, tenant.id) for _ in range(15)]
        renamed = during[0]
        await admin.patch(f"/v1/keys/{renamed['id']}", json={"name": "renamed while Kafka was down"})
        assert time.monotonic() - started < 10, "creating keys must not wait for Kafka"
        assert (await http.get("/readyz")).status_code == 200, "verify must stay in service while Kafka is down"
    finally:
        await asyncio.to_thread(kafka, "start")
    await event_log.wait_for(
        lambda _: all(event_log.about(k["id"]) for k in during) and len(event_log.about(renamed["id"])) == 2,
        timeout=120,
    )
    # Delivery is at-least-once, so a repeat is allowed; consumers drop it by ce_id. Nothing may be missing.
    assert {e.type for e in event_log.events if e.subject in {k["id"] for k in during}} >= {
        "io.keyward.apikey.created.v1"
    }
    assert [e.type for e in event_log.about(renamed["id"])] == [
        "io.keyward.apikey.created.v1",
        "io.keyward.apikey.updated.v1",
    ]
