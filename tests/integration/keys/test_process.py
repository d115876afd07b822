import asyncio
import os
import sys
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager

from services.keys.app import create_app
from shared.auth import parse_service_tokens
from shared.migrate import scratch_database
from tests.fixtures.errors import assert_error
from tests.fixtures.keys import Caller
from tests.fixtures.processes import ServiceProcess, service_env


async def test_the_keys_service_runs_as_a_process_and_reports_ready(keys_server: ServiceProcess):
    async with httpx.AsyncClient(base_url=keys_server.url) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "kafka": "ok"}
        metrics = (await client.get("/metrics")).text
        assert "keyward_outbox_backlog" in metrics
        assert "http_request_duration_seconds" in metrics


async def test_a_keys_service_that_does_not_relay_reports_no_kafka_and_needs_no_principal(settings):
    env = service_env(settings) | {"RUN_RELAY": "false", "KEYS_KAFKA_PASSWORD": ""}
    process = await ServiceProcess("keys", env).start()
    try:
        async with httpx.AsyncClient(base_url=process.url) as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok"}
    finally:
        await process.stop()


async def test_the_directory_import_runs_as_make_seed_runs_it_without_a_kafka_principal():
    """`make seed`: the whole development environment (the owner's DATABASE_URL), no Kafka principal."""
    async with scratch_database(os.environ["DATABASE_URL"], "kw_test_seed") as database_url:
        env = {k: v for k, v in os.environ.items() if k != "KAFKA_USERNAME"} | {"DATABASE_URL": database_url}
        demo = Path(__file__).parents[3] / "deploy/local/demo-directory.yaml"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.keys",
            "import-directory",
            str(demo),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, output.decode()


async def test_the_gateway_lists_the_directory_on_a_developers_machine_only(http, as_admin, world, settings):
    response = await as_admin(None).get("/v1/directory/administrators")
    assert response.status_code == 200
    assert world.system_admin in {a["username"] for a in response.json()}
    assert_error(await http.get("/v1/directory/administrators"), 401, "unauthorized")
    outside_dev = create_app(settings.model_copy(update={"keyward_env": "test"}), workers=False)
    async with (
        LifespanManager(outside_dev) as manager,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://keys") as client,
    ):
        caller = Caller.gateway(client, settings, None)
        assert_error(await caller.get("/v1/directory/administrators"), 404, "not_found")


async def test_the_notifier_reads_an_organizations_path_from_the_root(http, settings, tenant):
    notifier = {"Authorization": f"Bearer {parse_service_tokens(settings.service_tokens)['notifier']}"}
    response = await http.get(f"/v1/organizations/{tenant.orgs['org-2']}/path", headers=notifier)
    assert response.status_code == 200
    path = response.json()
    assert [o["depth"] for o in path] == [0, 1, 2, 3]
    assert [o["id"] for o in path[1:]] == [str(tenant.id), str(tenant.orgs["org-1"]), str(tenant.orgs["org-2"])]
    missing = await http.get("/v1/organizations/00000000-0000-0000-0000-000000000000/path", headers=notifier)
    assert_error(missing, 404, "not_found")


async def test_a_verify_process_answers_verify_only_and_an_admin_process_everything_else(settings, tenant):
    """SERVES=verify: verify on a process (and event loop) of its own, holding neither the key-encryption keys
    nor the gateway's claim secret; SERVES=admin: the rest, without verify."""
    env = service_env(settings) | {"RUN_RELAY": "false", "KEYS_KAFKA_PASSWORD": ""}
    voice = {"Authorization": f"Bearer {parse_service_tokens(settings.service_tokens)['voice']}"}
    verifier = await ServiceProcess("keys", env | {"SERVES": "verify", "RUN_RELAY": "true"}).start()
    assert not {"KEY_ENCRYPTION_KEYS", "ACTING_ADMIN_SECRET"} & set(verifier.env), "deploy/local/runenv.py"
    admin = await ServiceProcess("keys", env | {"SERVES": "admin"}).start()
    try:
        async with httpx.AsyncClient(base_url=admin.url) as http:
            created = await Caller.gateway(http, settings, tenant.admins[0]).post(
                "/v1/keys", json={"name": "verified apart", "organization_id": str(tenant.id)}
            )
            assert created.status_code == 201, created.text
            assert_error(
                await http.post("/v1/keys/verify", json={"key": created.json()["key"]}, headers=voice),
                404,
                "not_found",
            )
            assert (await http.get("/readyz")).json()["checks"] == {"database": "ok"}
        async with httpx.AsyncClient(base_url=verifier.url) as http:
            answer = await http.post("/v1/keys/verify", json={"key": created.json()["key"]}, headers=voice)
            assert answer.json()["valid"] is True, answer.text
            # The FastAPI route answers what the fast path hands on: its errors stay the documented ones.
            assert_error(await http.post("/v1/keys/verify", json={}, headers=voice), 422, "validation_failed")
            listing = await Caller.gateway(http, settings, tenant.admins[0]).get("/v1/keys")
            assert_error(listing, 404, "not_found")
            # No relay (though RUN_RELAY says so), hence no Kafka principal needed and no Kafka check.
            assert (await http.get("/readyz")).json()["checks"] == {"database": "ok"}
            assert list((await http.get("/openapi.json")).json()["paths"]) == ["/v1/keys/verify"]
    finally:
        await admin.stop()
        await verifier.stop()
