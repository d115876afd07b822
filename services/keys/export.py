"""CSV export: RFC 4180, formula cells neutralised, produced a chunk at a time."""

import csv
import io
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from services.keys.crypto import KeyCipher, Sealed

# A cell starting with one of these may be run as a formula by a spreadsheet (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
HEADER = ("id", "name", "organization", "expiration_date", "created_by", "created_at", "key")
ROWS_PER_CHUNK = 500


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
        )


def neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def encode_rows(rows: Iterable[Iterable[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerows([neutralise(cell) for cell in row] for row in rows)
    return buffer.getvalue().encode()


async def stream_csv(rows: AsyncIterator[tuple[str, ...]]) -> AsyncIterator[bytes]:
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
