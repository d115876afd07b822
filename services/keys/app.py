"""The keys service: app factories and what they run. Pools, the relay and the watchers start and stop here."""

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from fastapi import APIRouter, FastAPI
from starlette.types import Receive, Scope, Send

from services.keys import expiry, gauges, repository
from services.keys.config import RelaySettings, Settings
from services.keys.context import KeysContext, RelayContext
from services.keys.crypto import KeyCipher, KeyDigester, parse_ring
from services.keys.directory.endpoints import router as directory_router
from services.keys.endpoints import router as keys_router
from services.keys.export import ExportSlots
from services.keys.lookups import DigestLookups
from services.keys.outbox.relay import OutboxRelay
from services.keys.verify import PATH as VERIFY_PATH
from services.keys.verify import VerifyFastPath
from shared.app import service_app
from shared.auth import ServiceTokens, parse_service_tokens
from shared.db import create_pool
from shared.tasks import cancel_all

log = logging.getLogger(__name__)

# The most a stop may take (the grace periods in deploy/k8s are sized from these): the tasks' end, the last
# usage flush, the relay's producer and the pool, each within its own part.
SHUTDOWN_SECONDS = 10.0
RELAY_SHUTDOWN_SECONDS = 10.0


@contextlib.asynccontextmanager
async def running(cfg: Settings, *, workers: bool) -> AsyncIterator[KeysContext]:
    async with contextlib.AsyncExitStack() as stack:
        acquire_timeout = cfg.db_acquire_timeout.total_seconds()
        # Opened whole at the start: a burst of sign-ins does not wait for connections to be made.
        verify_pool = None
        if cfg.serves != "admin":
            verify_pool = await create_pool(
                cfg.verify_dsn,
                min_size=cfg.verify_db_pool_size,
                max_size=cfg.verify_db_pool_size,
                acquire_timeout=acquire_timeout,
            )
            stack.push_async_callback(verify_pool.close)
        if cfg.serves == "verify":
            # Only the usage flush (one statement every USAGE_FLUSH_INTERVAL) shares verify's pool here.
            pool = verify_pool
        else:
            pool = await create_pool(cfg.database_url, max_size=cfg.db_pool_size, acquire_timeout=acquire_timeout)
            stack.push_async_callback(pool.close)
        assert pool is not None
        ctx = KeysContext(
            settings=cfg,
            pool=pool,
            verify_pool=verify_pool or pool,
            service_tokens=ServiceTokens(parse_service_tokens(cfg.service_tokens)),
            sealer=(
                KeyCipher(parse_ring(cfg.key_encryption_keys, name="KEY_ENCRYPTION_KEYS", exact_bytes=32))
                if cfg.key_encryption_keys is not None
                else None
            ),
            digester=KeyDigester(parse_ring(cfg.key_hmac_secrets, name="KEY_HMAC_SECRETS")),
            exports=ExportSlots(cfg.exports_per_admin, cfg.exports_per_replica),
            lookups=DigestLookups(verify_pool or pool, cfg.verify_batch_max),
        )
        # A relay of its own process publishes the outbox where RUN_RELAY=false.
        if workers and cfg.relays:
            relay = outbox_relay(pool, cfg)
            stack.push_async_callback(relay.close)
        else:
            relay = None
        record_usage = functools.partial(repository.record_usage, pool)
        stack.push_async_callback(_flush_quietly, ctx, record_usage)
        # Before the last usage flush (callbacks run last first): the answers still in flight record their use.
        stack.push_async_callback(ctx.lookups.close)
        tasks = [
            asyncio.create_task(ctx.usage.run(record_usage, cfg.usage_flush_interval.total_seconds()), name="usage")
        ]
        if cfg.serves != "verify":
            tasks.append(asyncio.create_task(gauges.observe(pool), name="gauges"))
        if relay is not None:
            tasks.append(asyncio.create_task(relay.run(), name="relay"))
        if workers and cfg.serves != "verify":
            watcher = expiry.watch(pool, cfg.expiry_notice_thresholds, cfg.expiry_watch_interval, cfg.kafka_topic)
            tasks.append(asyncio.create_task(watcher, name="expiry-watcher"))
        stack.push_async_callback(cancel_all, tasks, timeout=5.0)
        log.info("keys service ready on port %d", cfg.port)
        yield ctx


async def _flush_quietly(ctx: KeysContext, record_usage: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ctx.usage.flush(record_usage), 2.0)


def create_app(settings: Settings | None = None, *, workers: bool = True) -> FastAPI:
    """`workers=False` serves the API only: no relay, watcher (for tests that run them apart)."""
    app = service_app(
        "keys",
        "Keyward keys service",
        lambda: settings or Settings(),  # type: ignore[call-arg]
        lambda cfg: running(cfg, workers=workers),
        shutdown_seconds=SHUTDOWN_SECONDS,
        app_class=KeysApp,
        max_body_bytes=settings.max_body_bytes if settings else 64 * 1024,
    )
    serves = settings.serves if settings else "all"
    if serves == "all":
        app.include_router(keys_router)
        app.include_router(directory_router)
    else:
        # Verify alone, or every route but verify (health and metrics are the app's own, on both).
        chosen = APIRouter()
        for router in (keys_router, directory_router):
            chosen.routes.extend(
                r for r in router.routes if (getattr(r, "path", "") == VERIFY_PATH) == (serves == "verify")
            )
        app.include_router(chosen)
        assert isinstance(app, KeysApp)
        app.answers_verify = serves == "verify"
    return app


class KeysApp(FastAPI):
    """FastAPI with the ordinary verify request answered in front of it (`services/keys/verify.py`): ahead
    of Starlette's and FastAPI's own middlewares too, which cost that request more than its database call."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._verify_fast_path = VerifyFastPath(super().__call__, self.state)
        # False where the process serves the administrators only (SERVES=admin): verify is a 404 there.
        self.answers_verify = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.answers_verify:
            await self._verify_fast_path(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


@contextlib.asynccontextmanager
async def running_relay(cfg: RelaySettings) -> AsyncIterator[RelayContext]:
    async with contextlib.AsyncExitStack() as stack:
        pool = await create_pool(
            cfg.database_url,
            min_size=1,
            max_size=cfg.relay_db_pool_size,
            acquire_timeout=cfg.db_acquire_timeout.total_seconds(),
        )
        stack.push_async_callback(pool.close)
        relay = outbox_relay(pool, cfg)
        stack.push_async_callback(relay.close)
        tasks = [
            asyncio.create_task(relay.run(), name="relay"),
            asyncio.create_task(gauges.observe(pool), name="gauges"),
        ]
        stack.push_async_callback(cancel_all, tasks, timeout=5.0)
        log.info("keys relay ready on port %d", cfg.relay_port)
        yield RelayContext(settings=cfg, pool=pool)


def create_relay_app(settings: RelaySettings | None = None) -> FastAPI:
    """The relay as a process of its own: the outbox relay and the outbox gauges, `/healthz`, `/readyz`
    and `/metrics`. It needs the database and Kafka only: no key material, no service tokens."""
    return service_app(
        "keys-relay",
        "Keyward keys relay",
        lambda: settings or RelaySettings(),
        running_relay,
        shutdown_seconds=RELAY_SHUTDOWN_SECONDS,
        openapi_url=None,
    )


def outbox_relay(pool: asyncpg.Pool, cfg: Settings | RelaySettings) -> OutboxRelay:
    return OutboxRelay(
        pool,
        cfg.database_url,
        cfg.kafka,
        client_id="keys-relay",
        retention_seconds=cfg.outbox_retention.total_seconds(),
    )
