"""What the keys service's lifespan builds and its routes and use cases are handed."""

from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg

from services.keys.config import RelaySettings, Settings
from services.keys.crypto import KeyCipher, KeyDigester
from services.keys.export import ExportSlots
from services.keys.lookups import DigestLookups
from services.keys.priority import VerifyInFlight
from services.keys.usage import UsageRecorder
from shared.app import database_check, kafka_check
from shared.auth import ServiceTokens
from shared.observability import Readiness


@dataclass(slots=True)
class KeysContext:
    settings: Settings
    # Every call but verify (DB_POOL_SIZE).
    pool: asyncpg.Pool
    # Verify's own (VERIFY_DB_POOL_SIZE): administrators' calls and exports cannot take its connections.
    verify_pool: asyncpg.Pool
    service_tokens: ServiceTokens
    # None in a process that serves verify only (SERVES=verify): it is never given the key-encryption keys.
    sealer: KeyCipher | None
    digester: KeyDigester
    exports: ExportSlots
    # Verify's lookups on verify_pool, the requests of one turn of the loop in one statement.
    lookups: DigestLookups
    usage: UsageRecorder = field(default_factory=UsageRecorder)
    # Verify requests being answered: exports give way to them (services/keys/priority.py).
    verifying: VerifyInFlight = field(default_factory=VerifyInFlight)

    @property
    def cipher(self) -> KeyCipher:
        """The ring that seals and opens full keys: the administrators' routes only, which a verify-only process
        does not mount."""
        if self.sealer is None:
            raise RuntimeError("this process serves verify only (SERVES=verify) and holds no key-encryption keys")
        return self.sealer

    @property
    def key_lifetime(self) -> timedelta:
        return self.settings.key_lifetime

    @property
    def topic(self) -> str:
        return self.settings.kafka_topic

    def readiness(self) -> Readiness:
        # On verify's pool: exports and administrators' calls taking every other connection leave a replica that
        # still answers verify, and it must stay in the Service.
        # A keys service that does not relay has no business with Kafka (nor, in Kubernetes, a way to reach it).
        return _database_decides(
            self.verify_pool, self.settings.kafka_bootstrap_servers if self.settings.uses_kafka else None
        )


@dataclass(slots=True)
class RelayContext:
    """The relay as a process of its own: the database and Kafka only, no key material, no service tokens."""

    settings: RelaySettings
    pool: asyncpg.Pool

    def readiness(self) -> Readiness:
        return _database_decides(self.pool, self.settings.kafka_bootstrap_servers)


def _database_decides(pool: asyncpg.Pool, bootstrap: str | None) -> Readiness:
    # Kafka is reported, not required: the outbox keeps every event while it is down, and verify must go on
    # serving voice clients meanwhile.
    return Readiness({"database": database_check(pool)}, {"kafka": kafka_check(bootstrap)} if bootstrap else {})
