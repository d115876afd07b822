"""Moves every key to the active encryption key and digest secret, a batch per transaction."""

import asyncpg

from services.keys import repository
from services.keys.crypto import KeyCipher, KeyDigester, Sealed

BATCH = 500


async def rotate(pool: asyncpg.Pool, cipher: KeyCipher, digester: KeyDigester) -> int:
    moved = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await repository.rows_to_rotate(conn, cipher.active_id, digester.active_id, BATCH)
            updates = []
            for row in rows:
                plain = cipher.open(Sealed(row["enc_key_id"], row["ciphertext"]), row["id"])
                sealed = cipher.seal(plain, row["id"])
                updates.append((row["id"], sealed.blob, sealed.key_id, digester.digest(plain), digester.active_id))
            await repository.store_rotated(conn, updates)
            if rows:
                await repository.audit(
                    conn,
                    "system",
                    "reencrypt",
                    details={"keys": len(rows), "enc_key_id": cipher.active_id, "digest_key_id": digester.active_id},
                )
        moved += len(rows)
        if len(rows) < BATCH:
            return moved
