"""The notifier: app factory and what it runs. The consumer, the sender loop and housekeeping start and stop here."""

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from uuid import uuid4

from fastapi import FastAPI

from services.notifier.config import Settings
from services.notifier.context import NotifierContext
from services.notifier.digests.service import DigestRule
from services.notifier.endpoints import router
from services.notifier.handlers import batch_dispatcher, dispatcher
from services.notifier.keys_client import KeysClient
from services.notifier.mailer import Mailer, SmtpConfig
from services.notifier.metrics import create_label_sets
from services.notifier.rendering import Renderer
from services.notifier.sender import Sender, housekeeping
from shared.app import service_app
from shared.auth import ServiceTokens, parse_service_tokens
from shared.consumer import STOP_SECONDS as CONSUMER_STOP_SECONDS
from shared.consumer import EventConsumer
from shared.db import create_pool
from shared.tasks import cancel_all

log = logging.getLogger(__name__)

# A send in flight finishes within SENDER_STOP_SECONDS (cut short, it would be sent again); then the consumer's
# bounded stop and the closes. The notifier's grace period in deploy/k8s is sized from SHUTDOWN_SECONDS.
SENDER_STOP_SECONDS = 25.0
SHUTDOWN_SECONDS = SENDER_STOP_SECONDS + CONSUMER_STOP_SECONDS + 3.0


def mailer_for(cfg: Settings) -> Mailer:
    return Mailer(
        SmtpConfig(
            host=cfg.smtp_host,
            port=cfg.smtp_port,
            sender=cfg.envelope_sender,
            username=cfg.smtp_username or None,
            password=cfg.smtp_password.get_secret_value() if cfg.smtp_password else None,
            starttls=cfg.smtp_starttls,
            tls=cfg.smtp_tls,
            timeout=cfg.smtp_timeout.total_seconds(),
        )
    )


@contextlib.asynccontextmanager
async def running(cfg: Settings) -> AsyncIterator[NotifierContext]:
    readers = ServiceTokens(parse_service_tokens(cfg.notices_tokens, variable="NOTICES_TOKENS"))
    create_label_sets(cfg.expiry_notice_thresholds)
    async with contextlib.AsyncExitStack() as stack:
        pool = await create_pool(
            cfg.database_url,
            min_size=2,
            max_size=cfg.db_pool_size,
            acquire_timeout=cfg.db_acquire_timeout.total_seconds(),
        )
        stack.push_async_callback(pool.close)
        keys = KeysClient(
            cfg.keys_url,
            cfg.keys_token,
            timeout=cfg.keys_timeout.total_seconds(),
            recipients_ttl=cfg.recipients_cache_ttl.total_seconds(),
            organizations_ttl=cfg.organization_cache_ttl.total_seconds(),
        )
        stack.push_async_callback(keys.close)
        instance = f"{socket.gethostname()}-{os.getpid()}"
        ctx = NotifierContext(
            settings=cfg,
            pool=pool,
            notices_readers=readers,
            keys=keys,
            mailer=mailer_for(cfg),
            renderer=Renderer(
                console_url=cfg.console_url, sender=cfg.smtp_from, override_dir=cfg.notifier_templates_dir
            ),
            owner=f"{instance}-{uuid4().hex[:6]}",
        )
        sender = Sender(
            ctx, concurrency=cfg.sender_concurrency, poll_interval=cfg.sender_poll_interval, lease=cfg.notice_lease
        )
        digest_rule = DigestRule(cfg.notice_digest_window, cfg.notice_digest_min)
        consumer = EventConsumer(
            kafka=cfg.kafka,
            topic=cfg.kafka_topic,
            group_id=cfg.notifier_consumer_group,
            client_id=f"notifier-{instance}",
            handle=dispatcher(pool, keys, sender.poke, digest_rule),
            handle_many=batch_dispatcher(pool, keys, sender.poke, digest_rule),
        )
        tasks = [
            asyncio.create_task(consumer.run(), name="notifier-consumer"),
            asyncio.create_task(sender.run(), name="notifier-sender"),
            asyncio.create_task(housekeeping(ctx, cfg.processed_events_retention), name="notifier-housekeeping"),
        ]
        stack.push_async_callback(cancel_all, tasks, timeout=CONSUMER_STOP_SECONDS)
        stack.push_async_callback(ctx.mailer.close_idle)
        # A send cut short between the server's 250 and the ledger's record would be sent again: the sender
        # stops first, finishing the send in flight.
        stack.push_async_callback(sender.stop, timeout=min(4 * cfg.smtp_timeout.total_seconds(), SENDER_STOP_SECONDS))
        log.info(
            "notifier ready on port %d; keys service at %s, SMTP at %s:%d",
            cfg.port,
            cfg.keys_url,
            cfg.smtp_host,
            cfg.smtp_port,
        )
        yield ctx


def create_app(settings: Settings | None = None) -> FastAPI:
    app = service_app(
        "notifier",
        "Keyward notifier",
        lambda: settings or Settings(),  # type: ignore[call-arg]
        running,
        shutdown_seconds=SHUTDOWN_SECONDS,
    )
    app.include_router(router)
    return app
