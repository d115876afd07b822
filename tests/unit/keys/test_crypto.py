import base64
import os
from uuid import uuid4

import pytest
from cryptography.exceptions import InvalidTag

from services.keys.crypto import KeyCipher, KeyDigester, parse_ring


def ring(*ids: str) -> str:
    return ",".join(f"{i}:{base64.b64encode(os.urandom(32)).decode()}" for i in ids)


def test_sealed_keys_open_only_for_their_own_row():
    cipher = KeyCipher(parse_ring(ring("k1"), name="R", exact_bytes=32))
    row = uuid4()
    sealed = cipher.seal("kwk_secret", row)
    assert b"kwk_secret" not in sealed.blob
    assert cipher.open(sealed, row) == "kwk_secret"
    with pytest.raises(InvalidTag):
        cipher.open(sealed, uuid4())


def test_a_rotated_ring_seals_with_the_first_key_and_still_opens_old_rows():
    old_ring = ring("k1")
    old = KeyCipher(parse_ring(old_ring, name="R", exact_bytes=32))
    row = uuid4()
    sealed = old.seal("kwk_x", row)
    new = KeyCipher(parse_ring(ring("k2") + "," + old_ring, name="R", exact_bytes=32))
    assert new.open(sealed, row) == "kwk_x"
    assert new.seal("kwk_x", row).key_id == "k2"


def test_digests_are_keyed_and_every_ring_secret_is_a_candidate():
    digester = KeyDigester(parse_ring(ring("h2", "h1"), name="R"))
    other = KeyDigester(parse_ring(ring("h1"), name="R"))
    assert digester.digest("kwk_a") != other.digest("kwk_a")
    assert len(digester.candidates("kwk_a")) == 2
    assert digester.digest("kwk_a") in digester.candidates("kwk_a")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "holds no key"),
        ("nocolon", "id:base64"),
        ("k1:***", "base64"),
        ("k1:" + base64.b64encode(b"short").decode(), "bytes"),
    ],
)
def test_bad_rings_are_refused_clearly(value, message):
    with pytest.raises(ValueError, match=message):
        parse_ring(value, name="R", exact_bytes=32)
