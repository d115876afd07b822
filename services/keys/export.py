"""CSV export: RFC 4180, formula cells neutralised, produced a chunk at a time."""

import collections
import contextlib
import csv
import io
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from services.keys.crypto import KeyCipher, Sealed
from shared.errors import ApiError

# A cell starting with one of these may be run as a formula by a spreadsheet (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# `replaces` and `replaced_by` (issue 21) come last, so that readers of the first seven columns read them still.
HEADER = ("id", "name", "organization", "expiration_date", "created_by", "created_at", "key", "replaces", "replaced_by")
ROWS_PER_CHUNK = 500
# An export's slice of the loop's time, about half a millisecond of decryption and encoding: then it gives way to
# verify (services/keys/priority.py).
ROWS_PER_TURN = 25
# When a caller over the limits may try again: an export at an ordinary pace takes about this long.
EXPORT_RETRY_AFTER_SECONDS = "30"


class ExportSlots:
    """How many exports stream at once on this replica, in all and per administrator (EXPORTS_PER_REPLICA,
    EXPORTS_PER_ADMIN): each holds a pooled connection and a repeatable-read transaction until it ends."""

    def __init__(self, per_admin: int, per_replica: int) -> None:
        self.per_admin = per_admin
        self.per_replica = per_replica
        self._by_admin: collections.Counter[str] = collections.Counter()

    @property
    def running(self) -> int:
        return self._by_admin.total()

    @contextlib.contextmanager
    def take(self, admin: str) -> Iterator[None]:
        """A slot for `admin`'s export while the block runs; a 429 with Retry-After when none is free."""
        if self._by_admin[admin] >= self.per_admin:
            raise _too_many(f"at most {self.per_admin} exports at once per administrator; try again when one ends")
        if self.running >= self.per_replica:
            raise _too_many("too many exports are running; try again shortly")
        self._by_admin[admin] += 1
        try:
            yield
        finally:
            self._by_admin[admin] -= 1
            if self._by_admin[admin] <= 0:
                del self._by_admin[admin]


def _too_many(message: str) -> ApiError:
    return ApiError(429, message, headers={"Retry-After": EXPORT_RETRY_AFTER_SECONDS})


async def key_cells(rows: AsyncIterator[Mapping[str, Any]], cipher: KeyCipher) -> AsyncIterator[tuple[str, ...]]:
    """One CSV row per stored key, in HEADER's order, with the key decrypted."""
    async for r in rows:
        yield (
            str(r["id"]),
            r["name"],
            r["organization_name"],
            r["expires_at"].date().isoformat(),
            r["created_by"],
            r["created_at"].isoformat(),
            cipher.open(Sealed(r["enc_key_id"], r["ciphertext"]), r["id"]),
            str(r["replaces"] or ""),
            str(r["replaced_by"] or ""),
        )


def neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def encode_rows(rows: Iterable[Iterable[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerows([neutralise(cell) for cell in row] for row in rows)
    return buffer.getvalue().encode()


async def stream_csv(rows: AsyncIterator[tuple[str, ...]]) -> AsyncGenerator[bytes]:
    # A BOM so spreadsheet programs read the UTF-8 names correctly.
    yield b"\xef\xbb\xbf" + encode_rows([HEADER])
    chunk: list[tuple[str, ...]] = []
    async for row in rows:
        chunk.append(row)
        if len(chunk) >= ROWS_PER_CHUNK:
            yield encode_rows(chunk)
            chunk = []
    if chunk:
        yield encode_rows(chunk)
