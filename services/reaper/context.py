"""What the reaper's lifespan builds and its checks read."""

from dataclasses import dataclass

import asyncpg

from services.reaper.config import Settings
from services.reaper.keys_client import KeysClient
from services.reaper.service import Reaper
from shared.app import database_check, kafka_check
from shared.observability import Readiness


@dataclass(frozen=True, slots=True)
class ReaperContext:
    settings: Settings
    pool: asyncpg.Pool
    keys: KeysClient
    reaper: Reaper

    def readiness(self) -> Readiness:
        """Kafka only sharpens the timing (the schedule); without it each pass still finds every expired key."""
        return Readiness(
            {"database": database_check(self.pool), "keys": self.keys.ping},
            {"kafka": kafka_check(self.settings.kafka_bootstrap_servers)},
        )
