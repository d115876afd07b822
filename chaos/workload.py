"""The steady workload of a chaos run, and the history the checker reads: every call with when it was sent and
when (and how) it was answered.

Administrators create, rename and delete keys through either gateway (a client that cannot connect to one
tries the other, as a load balancer does: nothing was sent). A verify stream at a fixed rate asks either keys
replica about keys that are live, deleted or expired; the checker holds each answer against the truth.
"""

import asyncio
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import httpx

from chaos.stack import ADMINS, Stack


@dataclass
class Call:
    kind: str  # create | rename | delete
    admin: str
    sent: float
    answered: float = 0.0
    status: int | None = None  # None: no answer (connection cut, timeout)
    error: str | None = None
    retry_after: bool = False
    gateway: str = ""
    key_id: str | None = None
    name: str | None = None
    expires_at: float | None = None


@dataclass
class Check:
    key_id: str
    sent: float
    answered: float
    status: int | None
    valid: bool | None
    replica: str


@dataclass
class Key:
    id: str
    secret: str
    name: str
    created: float  # the create call's answer
    expires_at: float
    delete_sent: float | None = None


@dataclass
class History:
    calls: list[Call] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    keys: dict[str, Key] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"calls": len(self.calls), "verifies": len(self.checks), "keys": len(self.keys)}

    def calls_json(self) -> list[dict[str, Any]]:
        return [asdict(c) for c in self.calls]


class Workload:
    def __init__(self, stack: Stack, rng: random.Random, *, ops_per_second: float, verifies_per_second: float) -> None:
        self.stack, self.rng = stack, rng
        self.ops_interval = len(ADMINS) / ops_per_second
        self.verify_interval = 1 / verifies_per_second
        self.history = History()
        self._live: list[str] = []
        self._stop = asyncio.Event()
        self._names = 0
        self._http = httpx.AsyncClient(timeout=15, limits=httpx.Limits(max_connections=64))

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._administer(admin)) for admin in ADMINS]
        tasks.append(asyncio.create_task(self._verify_stream()))
        await self._stop.wait()
        await asyncio.gather(*tasks)
        await self._http.aclose()

    async def _pace(self, interval: float, step: Any) -> None:
        """Calls `step` every `interval` seconds (each one in a task of its own: a slow answer delays nothing)."""
        pending: set[asyncio.Task[None]] = set()
        next_at = time.monotonic()
        while not self._stop.is_set():
            task = asyncio.create_task(step())
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*pending)

    async def _administer(self, admin: str) -> None:
        headers = {"Authorization": f"Bearer {self.stack.token(admin)}"}

        async def step() -> None:
            roll = self.rng.random()
            if not self._live or roll < 0.5 or len(self._live) < 5:
                await self._create(admin, headers)
            elif roll < 0.75:
                await self._rename(admin, headers, self.rng.choice(self._live))
            else:
                key_id = self.rng.choice(self._live)
                self._live.remove(key_id)
                await self._delete(admin, headers, key_id)

        await self._pace(self.ops_interval, step)

    async def _gateway_call(self, call: Call, method: str, path: str, headers: dict[str, str], **kw: Any) -> Any:
        gateways = self.stack.by_service("gateway")
        self.rng.shuffle(gateways)
        self.history.calls.append(call)
        for n, gateway in enumerate(gateways):
            call.gateway = gateway.name
            try:
                response = await self._http.request(method, f"{gateway.url}{path}", headers=headers, **kw)
            except httpx.ConnectError as exc:
                if n + 1 < len(gateways):
                    continue  # nothing was sent: the other gateway, as a load balancer would
                call.error = f"{type(exc).__name__}"
                break
            except httpx.HTTPError as exc:
                call.error = f"{type(exc).__name__}"
                break
            call.status = response.status_code
            call.retry_after = "retry-after" in response.headers
            call.answered = time.time()
            return response
        call.answered = time.time()
        return None

    async def _create(self, admin: str, headers: dict[str, str]) -> None:
        self._names += 1
        name = f"chaos-{self._names}-{self.rng.randrange(10**6)}"
        call = Call("create", admin, time.time(), name=name)
        body = {"name": name, "organization_id": self.stack.organization_id}
        response = await self._gateway_call(call, "POST", "/api/v1/keys", headers, json=body)
        if response is not None and response.status_code == 201:
            data = response.json()
            call.key_id = data["id"]
            call.expires_at = datetime.fromisoformat(data["expires_at"]).timestamp()
            self.history.keys[data["id"]] = Key(data["id"], data["key"], name, call.answered, call.expires_at)
            self._live.append(data["id"])
        # Expired keys leave the administrators' list (the reaper deletes them).
        now = time.time()
        self._live = [k for k in self._live if self.history.keys[k].expires_at > now + 2]

    async def _rename(self, admin: str, headers: dict[str, str], key_id: str) -> None:
        self._names += 1
        name = f"chaos-{self._names}-renamed"
        call = Call("rename", admin, time.time(), key_id=key_id, name=name)
        await self._gateway_call(call, "PATCH", f"/api/v1/keys/{key_id}", headers, json={"name": name})

    async def _delete(self, admin: str, headers: dict[str, str], key_id: str) -> None:
        call = Call("delete", admin, time.time(), key_id=key_id)
        self.history.keys[key_id].delete_sent = call.sent
        await self._gateway_call(call, "DELETE", f"/api/v1/keys/{key_id}", headers)

    async def _verify_stream(self) -> None:
        keys = self.stack.by_service("keys")
        headers = {"Authorization": f"Bearer {self.stack.voice_token}"}
        lifetime = self.stack.key_lifetime

        async def step() -> None:
            now = time.time()
            # Keys of the last lifetime and a half: live ones, deleted ones, expired ones, reaped ones.
            recent = [k for k in self.history.keys.values() if k.created > now - lifetime * 1.5]
            if not recent:
                return
            key = self.rng.choice(recent)
            replica = self.rng.choice(keys)
            sent = time.time()
            try:
                response = await self._http.post(
                    f"{replica.url}/v1/keys/verify", json={"key": key.secret}, headers=headers, timeout=5
                )
            except httpx.HTTPError:
                self.history.checks.append(Check(key.id, sent, time.time(), None, None, replica.name))
                return
            valid = response.json().get("valid") if response.status_code == 200 else None
            self.history.checks.append(Check(key.id, sent, time.time(), response.status_code, valid, replica.name))

        await self._pace(self.verify_interval, step)
