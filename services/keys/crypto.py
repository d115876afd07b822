"""Key material at rest: an HMAC-SHA256 digest to find a key, AES-256-GCM to show it again.

Both secrets come as rings (`id:base64,id:base64`, the first active) so either can be rotated: new rows use
the active entry, `reencrypt`/`rehash` move old rows over, and lookups try every digest secret meanwhile.
"""

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


def parse_ring(value: str, *, name: str, exact_bytes: int | None = None, min_bytes: int = 32) -> dict[str, bytes]:
    ring: dict[str, bytes] = {}
    for entry in value.split(","):
        entry = entry.strip()
        if not entry:
            continue
        key_id, sep, encoded = entry.partition(":")
        if not sep or not key_id:
            raise ValueError(f"{name}: each entry is id:base64")
        try:
            secret = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"{name}: entry {key_id!r} is not valid base64") from exc
        if exact_bytes is not None and len(secret) != exact_bytes:
            raise ValueError(f"{name}: entry {key_id!r} must decode to {exact_bytes} bytes, not {len(secret)}")
        if len(secret) < min_bytes:
            raise ValueError(f"{name}: entry {key_id!r} must decode to at least {min_bytes} bytes")
        if key_id in ring:
            raise ValueError(f"{name}: entry {key_id!r} appears twice")
        ring[key_id] = secret
    if not ring:
        raise ValueError(f"{name} holds no key")
    return ring


@dataclass(frozen=True, slots=True)
class Sealed:
    key_id: str
    blob: bytes


class KeyCipher:
    def __init__(self, ring: dict[str, bytes]) -> None:
        self._aead = {key_id: AESGCM(secret) for key_id, secret in ring.items()}
        self.active_id = next(iter(ring))

    def seal(self, plaintext: str, row_id: UUID) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        blob = nonce + self._aead[self.active_id].encrypt(nonce, plaintext.encode(), row_id.bytes)
        return Sealed(self.active_id, blob)

    def open(self, sealed: Sealed, row_id: UUID) -> str:
        aead = self._aead.get(sealed.key_id)
        if aead is None:
            raise LookupError(f"encryption key {sealed.key_id!r} is not in the ring")
        nonce, body = sealed.blob[:NONCE_BYTES], sealed.blob[NONCE_BYTES:]
        return aead.decrypt(nonce, body, row_id.bytes).decode()


class KeyDigester:
    def __init__(self, ring: dict[str, bytes]) -> None:
        self._ring = ring
        self.active_id = next(iter(ring))

    def digest(self, key: str, key_id: str | None = None) -> bytes:
        return hmac.new(self._ring[key_id or self.active_id], key.encode(), hashlib.sha256).digest()

    def candidates(self, key: str) -> list[bytes]:
        """Every digest the key may be stored under: one, or two while a secret is being rotated."""
        encoded = key.encode()
        return [hmac.new(secret, encoded, hashlib.sha256).digest() for secret in self._ring.values()]
