"""The notifier: app factory and lifespan. The consumer, the sender loop and housekeeping start and stop here."""

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from uuid import uuid4

from fastapi import FastAPI

from services.notifier.config import Settings
from services.notifier.directory import KeysDirectory
from services.notifier.endpoints import router
from services.notifier.handlers import batch_dispatcher, dispatcher
from services.notifier.mailer import Mailer, SmtpConfig
from services.notifier.rendering import Renderer
from services.notifier.sender import Sender, housekeeping
from services.notifier.service import NotifierContext
from shared.auth import ServiceTokens, parse_service_tokens
from shared.consumer import EventConsumer
from shared.db import create_pool
from shared.errors import install_error_handlers
from shared.heap import freeze_startup_heap
from shared.logging import configure_logging
from shared.observability import instrument, tcp_reachable
from shared.tasks import cancel_all

log = logging.getLogger(__name__)


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


def create_app(settings: Settings | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = settings or Settings()  # type: ignore[call-arg]
        configure_logging(cfg.log_level, cfg.log_format)
        tokens = parse_service_tokens(cfg.service_tokens)
        if cfg.notifier_service_name not in tokens:
            raise RuntimeError(f"SERVICE_TOKENS has no entry for {cfg.notifier_service_name!r} (NOTIFIER_SERVICE_NAME)")
        pool = await create_pool(cfg.database_url, min_size=2, max_size=cfg.db_pool_size)
        directory = KeysDirectory(
            cfg.keys_url,
            tokens[cfg.notifier_service_name],
            timeout=cfg.keys_timeout.total_seconds(),
            recipients_ttl=cfg.recipients_cache_ttl.total_seconds(),
            organizations_ttl=cfg.organization_cache_ttl.total_seconds(),
        )
        instance = f"{socket.gethostname()}-{os.getpid()}"
        ctx = NotifierContext(
            pool=pool,
            directory=directory,
            mailer=mailer_for(cfg),
            renderer=Renderer(
                console_url=cfg.console_url, sender=cfg.smtp_from, override_dir=cfg.notifier_templates_dir
            ),
            owner=f"{instance}-{uuid4().hex[:6]}",
            claim_timeout=cfg.notice_claim_timeout,
            retry=(cfg.notice_retry_initial, cfg.notice_retry_max),
        )
        sender = Sender(
            ctx, concurrency=cfg.sender_concurrency, poll_interval=cfg.sender_poll_interval, lease=cfg.notice_lease
        )
        consumer = EventConsumer(
            bootstrap=cfg.kafka_bootstrap_servers,
            topic=cfg.kafka_topic,
            group_id=cfg.notifier_consumer_group,
            client_id=f"notifier-{instance}",
            handle=dispatcher(pool, sender.poke),
            handle_many=batch_dispatcher(pool, sender.poke),
        )
        app.state.settings, app.state.pool, app.state.directory = cfg, pool, directory
        app.state.service_tokens = ServiceTokens(tokens)
        tasks = [
            asyncio.create_task(consumer.run(), name="notifier-consumer"),
            asyncio.create_task(sender.run(), name="notifier-sender"),
            asyncio.create_task(housekeeping(ctx, cfg.processed_events_retention), name="notifier-housekeeping"),
        ]
        log.info(
            "notifier ready on port %d; keys service at %s, SMTP at %s:%d",
            cfg.port,
            cfg.keys_url,
            cfg.smtp_host,
            cfg.smtp_port,
        )
        freeze_startup_heap()
        try:
            yield
        finally:
            # A send cut short between the server's 250 and the ledger's record would be sent again.
            await sender.stop(timeout=min(4 * cfg.smtp_timeout.total_seconds(), 25.0))
            await ctx.mailer.close_idle()
            await cancel_all(tasks)
            await directory.close()
            await pool.close()

    app = FastAPI(title="Keyward notifier", version="1", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(router)

    async def database() -> None:
        await app.state.pool.fetchval("SELECT 1")

    async def smtp() -> None:
        await tcp_reachable(f"{app.state.settings.smtp_host}:{app.state.settings.smtp_port}")

    async def keys_service() -> None:
        await app.state.directory.ping()

    async def kafka() -> None:
        await tcp_reachable(app.state.settings.kafka_bootstrap_servers)

    # Only the database is required: without SMTP, Kafka or the keys service, the ledger keeps the work
    # and the notices API answers; they are reported so an operator sees why e-mails wait.
    instrument(
        app, "notifier", {"database": database}, informational={"smtp": smtp, "keys": keys_service, "kafka": kafka}
    )
    return app
