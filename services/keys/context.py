"""What the use cases are handed: the pool, the key material tools and the settings they need."""

from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg

from services.keys.crypto import KeyCipher, KeyDigester
from services.keys.usage import UsageRecorder


@dataclass(slots=True)
class KeysContext:
    pool: asyncpg.Pool
    cipher: KeyCipher
    digester: KeyDigester
    key_lifetime: timedelta
    topic: str
    usage: UsageRecorder = field(default_factory=UsageRecorder)
