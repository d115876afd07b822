"""The key format, recognisable by secret scanners and checkable without a database.

    kwk_<36 base62 characters from `secrets`><6 base62 characters of CRC32>

36 base62 characters carry 214 bits. The CRC32 of everything before it catches a mistyped key at once,
the way GitHub's token format does; it is a typo check, not a secret.
"""

import re
import secrets
import zlib

PREFIX = "kwk_"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH = 36
CHECKSUM_LENGTH = 6
KEY_LENGTH = len(PREFIX) + RANDOM_LENGTH + CHECKSUM_LENGTH
KEY_PATTERN = re.compile(rf"^{PREFIX}[0-9A-Za-z]{{{RANDOM_LENGTH + CHECKSUM_LENGTH}}}$")
# What the console shows: enough to tell keys apart, far too little to guess one.
DISPLAY_HEAD = len(PREFIX) + 4
DISPLAY_TAIL = 4


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(ALPHABET[rest])
    return "".join(reversed(digits)).rjust(width, ALPHABET[0])


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def generate() -> str:
    body = PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return body + checksum(body)


def is_well_formed(key: str) -> bool:
    """True when the key has our shape and its checksum matches; costs no I/O."""
    if len(key) != KEY_LENGTH or KEY_PATTERN.match(key) is None:
        return False
    return secrets.compare_digest(checksum(key[:-CHECKSUM_LENGTH]), key[-CHECKSUM_LENGTH:])


def display(key: str) -> str:
    return f"{key[:DISPLAY_HEAD]}…{key[-DISPLAY_TAIL:]}"
