"""Bulk data straight into PostgreSQL with COPY: the organization tree, an administrator and real keys.

Keys are generated in worker processes, each with its own connection, so 1,000,000 of them load in about
a minute on two cores. Every row is real: its digest finds it (verify) and its ciphertext opens with its own
id as associated data (export).
"""

import asyncio
import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from uuid import UUID, uuid4

import asyncpg

from services.keys import keyformat
from services.keys.crypto import KeyCipher, KeyDigester, parse_ring
from services.keys.directory.repository import label

KEY_COLUMNS = (
    "id",
    "name",
    "organization_id",
    "organization_path",
    "organization_name",
    "tenant_id",
    "created_by",
    "created_at",
    "expires_at",
    "key_display",
    "digest",
    "digest_key_id",
    "ciphertext",
    "enc_key_id",
    "noticed_threshold_seconds",
)
WORDS = (
    "voice",
    "billing",
    "support",
    "kiosk",
    "frontdesk",
    "lobby",
    "sales",
    "ivr",
    "ward",
    "clinic",
    "desk",
    "nurse",
    "pager",
    "intake",
    "triage",
    "mobile",
    "tablet",
    "station",
    "north",
    "south",
    "east",
    "west",
    "annex",
    "tower",
    "garden",
    "harbor",
    "summit",
    "valley",
    "river",
    "meadow",
)
CREATORS = tuple(f"admin.{w}" for w in WORDS)
ADMIN = "bench-admin"
# Levels 1..6 of the tree: 1 root, then tenants, then organizations; 1,000 nodes in all.
LEVEL_SIZES = (1, 5, 20, 80, 240, 654)


@dataclass(frozen=True)
class Org:
    id: UUID
    name: str
    path: str
    tenant_id: UUID | None
    depth: int


async def register_ltree(conn: asyncpg.Connection) -> None:
    # ltree's binary form (PostgreSQL >= 14) is a version byte then the text; COPY is binary.
    await conn.set_type_codec(
        "ltree",
        schema="public",
        format="binary",
        encoder=lambda s: b"\x01" + s.encode(),
        decoder=lambda b: b[1:].decode(),
    )


def build_tree(total: int = 1000, seed: int = 7) -> list[Org]:
    """A 6-level tree of `total` organizations (root, tenants, four levels below), parents picked at random."""
    rng = random.Random(seed)
    sizes = [round(s * total / sum(LEVEL_SIZES)) or 1 for s in LEVEL_SIZES]
    sizes[0] = 1
    root_id = uuid4()
    levels: list[list[Org]] = [[Org(root_id, "Keyward", label(root_id), None, 0)]]
    for depth, size in enumerate(sizes[1:], start=1):
        parents = levels[-1]
        level = []
        for i in range(size):
            # Every parent gets a child first, so the tree really is six levels deep everywhere it can be.
            parent = parents[i] if i < len(parents) else rng.choice(parents)
            org_id = uuid4()
            tenant = org_id if depth == 1 else parent.tenant_id
            name = f"{rng.choice(WORDS).title()} {'Tenant' if depth == 1 else 'Unit'} {depth}-{i}"
            level.append(Org(org_id, name, f"{parent.path}.{label(org_id)}", tenant, depth))
        levels.append(level)
    return [org for level in levels for org in level]


async def load_directory(conn: asyncpg.Connection, orgs: list[Org]) -> None:
    """The tree plus one system-level customer administrator, ADMIN."""
    await register_ltree(conn)
    by_path = {o.path: o for o in orgs}
    rows = [
        (o.id, by_path[o.path.rpartition(".")[0]].id if o.depth else None, o.name, o.path, o.tenant_id) for o in orgs
    ]
    await conn.copy_records_to_table(
        "organizations", schema_name="keys", records=rows, columns=["id", "parent_id", "name", "path", "tenant_id"]
    )
    await conn.execute(
        """
        INSERT INTO keys.administrators (id, username, email, display_name, level, role, organization_id)
        VALUES ($1, $2, $3, 'Bench Admin', 'system', 'customer_administrator', $4)
        """,
        uuid4(),
        ADMIN,
        f"{ADMIN}@example.com",
        orgs[0].id,
    )


def fast_key() -> str:
    """keyformat's shape and checksum from 27 random bytes: ~8x faster than generate(), as well formed."""
    number = int.from_bytes(os.urandom(27), "big")
    digits = []
    for _ in range(keyformat.RANDOM_LENGTH):
        number, rest = divmod(number, 62)
        digits.append(keyformat.ALPHABET[rest])
    body = keyformat.PREFIX + "".join(digits)
    return body + keyformat.checksum(body)


@dataclass(frozen=True)
class KeyBatch:
    dsn: str
    orgs: list[Org]
    count: int
    first: int
    seed: int
    real_keys: bool
    keep_plain: bool
    # Seconds from now: when the keys were created, at most (spread) back; their lifetime.
    spread: float
    lifetime: float
    prefix: str = ""
    # The expiry notice threshold already announced (seconds), as if the watcher had run: no event storm.
    noticed: int | None = None
    # When set: every key expires within one second after this instant (created a year before it).
    expires_at: datetime | None = None


def _make_rows(batch: KeyBatch, cipher: KeyCipher, digester: KeyDigester) -> tuple[list[tuple], list[str]]:
    rng = random.Random(batch.seed)
    now = datetime.now(UTC)
    rows, plains = [], []
    lifetime = timedelta(seconds=batch.lifetime)
    for n in range(batch.first, batch.first + batch.count):
        org = rng.choice(batch.orgs)
        key_id = uuid4()
        plain = keyformat.generate() if batch.real_keys else fast_key()
        created = now - timedelta(seconds=rng.random() * batch.spread)
        if batch.expires_at is not None:
            created = batch.expires_at + timedelta(seconds=rng.random()) - lifetime
        sealed = cipher.seal(plain, key_id)
        name = f"{batch.prefix}{rng.choice(WORDS)}-{rng.choice(WORDS)}-{n:07d}"
        rows.append(
            (
                key_id,
                name,
                org.id,
                org.path,
                org.name,
                org.tenant_id,
                rng.choice(CREATORS),
                created,
                created + lifetime,
                keyformat.display(plain),
                digester.digest(plain),
                digester.active_id,
                sealed.blob,
                sealed.key_id,
                batch.noticed,
            )
        )
        if batch.keep_plain:
            plains.append(plain)
    return rows, plains


async def _copy(batch: KeyBatch) -> list[str]:
    cipher = KeyCipher(parse_ring(os.environ["KEY_ENCRYPTION_KEYS"], name="KEY_ENCRYPTION_KEYS", exact_bytes=32))
    digester = KeyDigester(parse_ring(os.environ["KEY_HMAC_SECRETS"], name="KEY_HMAC_SECRETS"))
    conn = await asyncpg.connect(batch.dsn)
    try:
        await register_ltree(conn)
        plains: list[str] = []
        step = 20_000
        for start in range(0, batch.count, step):
            part = KeyBatch(
                **{
                    **batch.__dict__,
                    "first": batch.first + start,
                    "count": min(step, batch.count - start),
                    "seed": batch.seed * 1_000_003 + start,
                }
            )
            rows, some = _make_rows(part, cipher, digester)
            await conn.copy_records_to_table("api_keys", schema_name="keys", records=rows, columns=KEY_COLUMNS)
            plains += some
        return plains
    finally:
        await conn.close()


def _copy_in_worker(batch: KeyBatch) -> list[str]:
    return asyncio.run(_copy(batch))


async def load_keys(
    dsn: str,
    orgs: list[Org],
    count: int,
    *,
    first: int = 0,
    real_keys: bool = False,
    keep_plain: bool = False,
    spread: float = 330 * 86400,
    lifetime: float = 365 * 86400,
    prefix: str = "",
    noticed: int | None = None,
    expires_at: datetime | None = None,
    workers: int = 2,
) -> list[str]:
    """COPYs `count` keys spread at random over `orgs`; returns their plain keys when `keep_plain`."""
    per = -(-count // workers)
    batches = [
        KeyBatch(
            dsn,
            orgs,
            min(per, count - i * per),
            first + i * per,
            random.randrange(1 << 30),
            real_keys,
            keep_plain,
            spread,
            lifetime,
            prefix,
            noticed,
            expires_at,
        )
        for i in range(workers)
        if count - i * per > 0
    ]
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(len(batches), mp_context=get_context("spawn")) as pool:
        results = await asyncio.gather(*(loop.run_in_executor(pool, _copy_in_worker, b) for b in batches))
    return [plain for part in results for plain in part]
