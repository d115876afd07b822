"""The reaper: app factory and what it runs. The event consumer and the reaping loop start and stop here."""

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator

from fastapi import FastAPI

from services.reaper.config import Settings
from services.reaper.context import ReaperContext
from services.reaper.handlers import HANDLED_TYPES, HandlerContext, dispatcher
from services.reaper.keys_client import KeysClient
from services.reaper.metrics import OLDEST_EXPIRED_AGE
from services.reaper.repository import Schedule
from services.reaper.service import Reaper
from shared.app import service_app
from shared.consumer import EventConsumer
from shared.db import create_pool
from shared.tasks import cancel_all

log = logging.getLogger(__name__)

SHUTDOWN_WAIT_SECONDS = 2.0
# The whole stop: the tasks, then the keys client and the pool (deploy/k8s sizes the grace period from it).
SHUTDOWN_SECONDS = SHUTDOWN_WAIT_SECONDS + 3.0


@contextlib.asynccontextmanager
async def running(cfg: Settings) -> AsyncIterator[ReaperContext]:
    # httpx logs every request at INFO: two a second per replica here.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    async with contextlib.AsyncExitStack() as stack:
        # The schedule is a hint: each pass asks the keys service what has really expired, so a schedule
        # write lost in a database crash costs nothing. Commits that skip the WAL flush make the flood of
        # `deleted` events after a mass expiry cheap for PostgreSQL, which the keys service shares.
        pool = await create_pool(
            cfg.database_url,
            min_size=1,
            max_size=cfg.db_pool_size,
            acquire_timeout=cfg.db_acquire_timeout.total_seconds(),
            server_settings={"synchronous_commit": "off"},
        )
        stack.push_async_callback(pool.close)
        keys = KeysClient(cfg.keys_url, cfg.keys_token, cfg.keys_timeout.total_seconds())
        stack.push_async_callback(keys.close)
        schedule = Schedule(pool)
        reaper = Reaper(
            keys,
            schedule,
            interval=cfg.reaper_interval,
            batch_size=cfg.reaper_batch_size,
            concurrency=cfg.reaper_concurrency,
            max_rate=cfg.reaper_max_rate,
            spread=cfg.spread,
            paced_batch_size=cfg.reaper_paced_batch_size,
        )
        OLDEST_EXPIRED_AGE.set_function(reaper.oldest_expired_age)
        consumer = EventConsumer(
            kafka=cfg.kafka,
            topic=cfg.kafka_topic,
            group_id=cfg.reaper_consumer_group,
            client_id=f"reaper-{socket.gethostname()}-{os.getpid()}",
            handle=dispatcher(HandlerContext(schedule, reaper)),
            types=HANDLED_TYPES,
        )
        tasks = [
            asyncio.create_task(reaper.run(), name="reaper"),
            asyncio.create_task(consumer.run(), name="reaper-consumer"),
        ]
        # Leaving the consumer group waits for a rebalance to end, which a replica that died without leaving
        # can hold up for its whole session timeout; the consumer commits what it handled on its way out, and
        # the schedule is idempotent, so there is nothing to lose by not waiting that long.
        stack.push_async_callback(cancel_all, tasks, timeout=SHUTDOWN_WAIT_SECONDS)
        log.info("reaper ready on port %d, keys service at %s", cfg.port, cfg.keys_url)
        yield ReaperContext(settings=cfg, pool=pool, keys=keys, reaper=reaper)


def create_app(settings: Settings | None = None) -> FastAPI:
    return service_app(
        "reaper",
        "Keyward reaper",
        lambda: settings or Settings(),  # type: ignore[call-arg]
        running,
        shutdown_seconds=SHUTDOWN_SECONDS,
    )
