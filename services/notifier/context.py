"""What the notifier's lifespan builds and its routes, consumer and sender are handed."""

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg

from services.notifier.config import Settings
from services.notifier.keys_client import KeysClient
from services.notifier.mailer import Mailer
from services.notifier.rendering import Renderer
from shared.app import database_check, kafka_check
from shared.auth import ServiceTokens
from shared.observability import Readiness, tcp_reachable


@dataclass(frozen=True, slots=True)
class NotifierContext:
    settings: Settings
    pool: asyncpg.Pool
    # Who may read the notices: the tokens of NOTICES_TOKENS.
    notices_readers: ServiceTokens
    keys: KeysClient
    mailer: Mailer
    renderer: Renderer
    # Who holds a claim: this process, unique across restarts.
    owner: str
    # Set at shutdown: a fan-out finishes the send in flight, then leaves the rest for later.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def claim_timeout(self) -> timedelta:
        return self.settings.notice_claim_timeout

    @property
    def retry(self) -> tuple[timedelta, timedelta]:
        return self.settings.notice_retry_initial, self.settings.notice_retry_max

    def readiness(self) -> Readiness:
        """Only the database is required: without SMTP, Kafka or the keys service, the ledger keeps the work
        and the notices API answers; they are reported so that an operator sees why e-mails wait."""
        smtp = f"{self.settings.smtp_host}:{self.settings.smtp_port}"
        return Readiness(
            {"database": database_check(self.pool)},
            {
                "smtp": lambda: tcp_reachable(smtp),
                "keys": self.keys.ping,
                "kafka": kafka_check(self.settings.kafka_bootstrap_servers),
            },
        )
