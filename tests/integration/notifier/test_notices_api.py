"""The notices API the gateway reads: one key's notices, or many keys' at once; a service token required."""

import os

import httpx

from shared.auth import parse_service_tokens
from tests.fixtures.errors import assert_error
from tests.fixtures.events import Publisher, expiring, key_fields
from tests.fixtures.mail import Sink, email_of
from tests.fixtures.notifier import Notifier, wait_for_notices


async def test_the_notices_of_a_key_list_threshold_recipient_status_and_sent_at(
    publish: Publisher, sink: Sink, make_tenant, make_key, notices_api: httpx.AsyncClient
):
    tenant = await make_tenant(admins=2)
    fields = await make_key(tenant)
    await publish.event(expiring(fields, 30))
    await publish.event(expiring(fields, 14))
    items = await wait_for_notices(
        notices_api, fields["key_id"], lambda items: len(items) == 4 and all(i["status"] == "sent" for i in items)
    )
    assert [(i["threshold"], i["recipient"]) for i in items] == [
        (threshold, email_of(admin)) for threshold in ("30d", "14d") for admin in sorted(tenant.admins)
    ]
    first = items[0]
    assert first["key_id"] == str(fields["key_id"])
    assert first["threshold_seconds"] == 30 * 86400
    assert first["username"] == sorted(tenant.admins)[0]
    assert first["sent_at"] and first["attempts"] == 1 and first["last_error"] is None


async def test_the_notices_of_many_keys_come_in_one_call(
    publish: Publisher, sink: Sink, make_tenant, make_key, notices_api: httpx.AsyncClient
):
    tenant = await make_tenant(admins=1)
    keys = [await make_key(tenant) for _ in range(3)]
    for fields in keys:
        await publish.event(expiring(fields, 30))
    await sink.wait_for(lambda: all(sink.about(k["key_id"]) for k in keys))
    await wait_for_notices(notices_api, keys[2]["key_id"], lambda items: items and items[0]["status"] == "sent")
    wanted = [str(keys[0]["key_id"]), str(keys[2]["key_id"])]

    by_post = await notices_api.post("/v1/notices/query", json={"key_ids": wanted})
    by_get = await notices_api.get("/v1/notices", params=[("key_id", k) for k in wanted])
    for response in (by_post, by_get):
        assert response.status_code == 200, response.text
        assert sorted(i["key_id"] for i in response.json()["items"]) == sorted(wanted)

    unknown = await notices_api.post("/v1/notices/query", json={"key_ids": [str(key_fields(tenant)["key_id"])]})
    assert unknown.json() == {"items": []}
    for bad in [], ["nope"], wanted * 300:
        refused = await notices_api.post("/v1/notices/query", json={"key_ids": bad})
        fields = assert_error(refused, 422, "validation_failed")["fields"]
        assert [name.split(".")[0] for name in fields] == ["key_ids"], fields


async def test_the_notices_need_a_token_of_a_service_allowed_to_read_them(notifier: Notifier, make_tenant):
    path = f"/v1/keys/{key_fields(await make_tenant(admins=1))['key_id']}/notices"
    reaper = parse_service_tokens(os.environ["SERVICE_TOKENS"])["reaper"]  # valid at the keys service only
    async with httpx.AsyncClient(base_url=notifier.url) as client:
        missing = await client.get(path)
        wrong = await client.get(path, headers={"Authorization": "Bearer not-a-known-token-at-all"})
        not_allowed = await client.get(path, headers={"Authorization": f"Bearer {reaper}"})
    assert_error(missing, 401, "unauthorized")
    assert_error(wrong, 401, "unauthorized")
    assert_error(not_allowed, 401, "unauthorized")
    gateway_at_keys = parse_service_tokens(os.environ["SERVICE_TOKENS"])["gateway"]
    async with httpx.AsyncClient(base_url=notifier.url) as client:
        keys_token = await client.get(path, headers={"Authorization": f"Bearer {gateway_at_keys}"})
    assert_error(keys_token, 401, "unauthorized")
