"""What every scenario is handed: the run's database, topic, tree, verify keys and how to call the service."""

import asyncio
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench import data, upkeep
from bench.settings import Sizes
from bench.stack import Process
from shared.auth import parse_service_tokens, sign_acting_admin

# Bulk loads larger than this drop the secondary indexes and rebuild them after: ~3x faster than COPY
# maintaining ten indexes (a GIN trigram one among them) row by row.
REBUILD_ABOVE = 200_000


@dataclass
class Bench:
    sizes: Sizes
    dsn: str
    topic: str
    orgs: list[data.Org] = field(default_factory=list)
    verify_keys: list[str] = field(default_factory=list)
    loaded: int = 0
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="keyward-bench-")))
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def tokens(self) -> dict[str, str]:
        return parse_service_tokens(os.environ["SERVICE_TOKENS"])

    def service_env(self, **extra: str) -> dict[str, str]:
        return {"DATABASE_URL": self.dsn, "KAFKA_TOPIC": self.topic, **extra}

    def keys_process(self, **extra: str) -> Process:
        return Process.service("keys", self.service_env(**extra))

    def keys_api_and_relay(self, **extra: str) -> tuple[Process, Process]:
        """The production layout (deploy/k8s): the keys API without the relay, and the relay apart."""
        return (
            Process.service("keys", self.service_env(RUN_RELAY="false", **extra)),
            Process.keys_relay(self.service_env(**extra)),
        )

    def admin_headers(self, method: str, path: str) -> dict[str, str]:
        """The gateway's credentials acting for the bench's system administrator: a claim for one request."""
        claim = sign_acting_admin(
            data.ADMIN,
            secret=os.environ["ACTING_ADMIN_SECRET"],
            issuer="gateway",
            audience="keys",
            method=method,
            path=path,
        )
        return {"Authorization": f"Bearer {self.tokens['gateway']}", "X-Acting-Admin": claim}

    async def connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self.dsn)
        await data.register_ltree(conn)
        return conn

    async def setup_directory(self) -> None:
        self.orgs = data.build_tree(self.sizes.organizations)
        conn = await self.connect()
        try:
            await data.load_directory(conn, self.orgs)
        finally:
            await conn.close()

    async def grow_to(self, total: int, *, real_keys: bool = False, keep_plain: bool = False) -> None:
        """Loads keys until the table holds `total` (bulk-loaded, all live for 35 days or more), then VACUUMs."""
        count = total - self.loaded
        if count <= 0:
            return
        started = asyncio.get_running_loop().time()
        definitions: list[str] = []
        if count > REBUILD_ABOVE:
            conn = await self.connect()
            try:
                definitions = await upkeep.drop_secondary_indexes(conn)
            finally:
                await conn.close()
        plains = await data.load_keys(
            self.dsn, self.orgs, count, first=self.loaded, real_keys=real_keys, keep_plain=keep_plain
        )
        if definitions:
            await upkeep.rebuild_indexes(self.dsn, definitions)
        await upkeep.analyze(self.dsn)
        self.verify_keys += plains
        self.loaded = total
        self.timings[f"load_to_{total}"] = round(asyncio.get_running_loop().time() - started, 1)
