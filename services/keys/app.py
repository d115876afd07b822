"""The keys service: app factory and lifespan. Pools, the relay and the watchers start and stop here."""

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from services.keys import expiry, gauges, repository
from services.keys.config import RelaySettings, Settings
from services.keys.context import KeysContext
from services.keys.crypto import KeyCipher, KeyDigester, parse_ring
from services.keys.directory.endpoints import router as directory_router
from services.keys.endpoints import router as keys_router
from services.keys.relay import OutboxRelay
from services.keys.verify import VerifyFastPath
from shared.auth import ServiceTokens, parse_service_tokens
from shared.db import create_pool
from shared.errors import BodySizeLimit, install_error_handlers
from shared.heap import freeze_startup_heap
from shared.logging import configure_logging
from shared.observability import instrument, tcp_reachable
from shared.tasks import cancel_all

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, workers: bool = True) -> FastAPI:
    """`workers=False` serves the API only: no relay, watcher or usage flusher (for tests that run them apart)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = settings or Settings()  # type: ignore[call-arg]
        configure_logging(cfg.log_level, cfg.log_format)
        pool = await create_pool(cfg.database_url, max_size=cfg.db_pool_size)
        ctx = KeysContext(
            pool=pool,
            cipher=KeyCipher(parse_ring(cfg.key_encryption_keys, name="KEY_ENCRYPTION_KEYS", exact_bytes=32)),
            digester=KeyDigester(parse_ring(cfg.key_hmac_secrets, name="KEY_HMAC_SECRETS")),
            key_lifetime=cfg.key_lifetime,
            topic=cfg.kafka_topic,
        )
        app.state.settings = cfg
        app.state.pool = pool
        app.state.keys = ctx
        app.state.service_tokens = ServiceTokens(parse_service_tokens(cfg.service_tokens))
        # None where a relay process of its own publishes the outbox (RUN_RELAY=false).
        relay = outbox_relay(pool, cfg) if workers and cfg.run_relay else None
        record_usage = functools.partial(repository.record_usage, pool)
        tasks: list[asyncio.Task[None]] = [
            asyncio.create_task(
                ctx.usage.run(record_usage, cfg.usage_flush_interval.total_seconds()),
                name="usage",
            ),
            asyncio.create_task(gauges.observe(pool), name="gauges"),
        ]
        if relay is not None:
            tasks.append(asyncio.create_task(relay.run(), name="relay"))
        if workers:
            tasks += [
                asyncio.create_task(
                    expiry.watch(pool, cfg.expiry_notice_thresholds, cfg.expiry_watch_interval, cfg.kafka_topic),
                    name="expiry-watcher",
                ),
            ]
        log.info("keys service ready on port %d", cfg.port)
        freeze_startup_heap()
        try:
            yield
        finally:
            await cancel_all(tasks)
            with contextlib.suppress(Exception):
                await ctx.usage.flush(record_usage)
            if relay is not None:
                await relay.close()
            await pool.close()

    app = KeysApp(title="Keyward keys service", version="1", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(keys_router)
    app.include_router(directory_router)

    # Kafka is reported, not required: the outbox keeps every event while it is down, and verify must
    # go on serving voice clients meanwhile.
    instrument_with_database_and_kafka(app, "keys")
    app.add_middleware(BodySizeLimit, max_bytes=(settings.max_body_bytes if settings else 64 * 1024))
    return app


class KeysApp(FastAPI):
    """FastAPI with the ordinary verify request answered in front of it (`services/keys/verify.py`): ahead
    of Starlette's and FastAPI's own middlewares too, which cost that request more than its database call."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._verify_fast_path = VerifyFastPath(super().__call__, self.state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._verify_fast_path(scope, receive, send)


def create_relay_app(settings: RelaySettings | None = None) -> FastAPI:
    """The relay as a process of its own: the outbox relay and the outbox gauges, `/healthz`, `/readyz`
    and `/metrics`. It needs the database and Kafka only: no key material, no service tokens."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = settings or RelaySettings()
        configure_logging(cfg.log_level, cfg.log_format)
        pool = await create_pool(cfg.database_url, min_size=1, max_size=cfg.relay_db_pool_size)
        app.state.settings, app.state.pool = cfg, pool
        relay = outbox_relay(pool, cfg)
        tasks = [
            asyncio.create_task(relay.run(), name="relay"),
            asyncio.create_task(gauges.observe(pool), name="gauges"),
        ]
        log.info("keys relay ready on port %d", cfg.relay_port)
        freeze_startup_heap()
        try:
            yield
        finally:
            await cancel_all(tasks)
            await relay.close()
            await pool.close()

    app = FastAPI(title="Keyward keys relay", version="1", lifespan=lifespan, openapi_url=None)
    install_error_handlers(app)

    instrument_with_database_and_kafka(app, "keys-relay")
    return app


def outbox_relay(pool: asyncpg.Pool, cfg: Settings | RelaySettings) -> OutboxRelay:
    return OutboxRelay(
        pool,
        cfg.database_url,
        cfg.kafka_bootstrap_servers,
        client_id="keys-relay",
        retention_seconds=cfg.outbox_retention.total_seconds(),
    )


def instrument_with_database_and_kafka(app: FastAPI, name: str) -> None:
    """/healthz, /readyz (the database decides; Kafka is reported) and /metrics."""

    async def database() -> None:
        await app.state.pool.fetchval("SELECT 1")

    async def kafka() -> None:
        await tcp_reachable(app.state.settings.kafka_bootstrap_servers)

    instrument(app, name, {"database": database}, informational={"kafka": kafka})
