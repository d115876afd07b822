import zlib

import pytest

from services.keys import keyformat


def test_generated_keys_have_the_prefix_length_and_a_valid_checksum():
    key = keyformat.generate()
    assert key.startswith("kwk_")
    assert len(key) == keyformat.KEY_LENGTH
    assert keyformat.is_well_formed(key)


def test_generated_keys_carry_at_least_160_random_bits():
    import math

    assert keyformat.RANDOM_LENGTH * math.log2(len(keyformat.ALPHABET)) >= 160
    assert len({keyformat.generate() for _ in range(1000)}) == 1000


@pytest.mark.parametrize("position", [4, 10, 20, 39, 44])
def test_a_single_mistyped_character_is_refused_without_a_lookup(position):
    key = keyformat.generate()
    replacement = "A" if key[position] != "A" else "B"
    typo = key[:position] + replacement + key[position + 1 :]
    assert not keyformat.is_well_formed(typo)


def test_two_swapped_characters_are_refused():
    key = keyformat.generate()
    i = next(i for i in range(4, 39) if key[i] != key[i + 1])
    swapped = key[:i] + key[i + 1] + key[i] + key[i + 2 :]
    assert not keyformat.is_well_formed(swapped)


@pytest.mark.parametrize(
    "candidate",
    ["", "kwk_", "ghp_" + "a" * 42, "kwk_" + "a" * 41, "kwk_" + "a" * 43, "kwk_" + "!" * 42, "KWK_" + "a" * 42],
)
def test_malformed_keys_are_refused(candidate):
    assert not keyformat.is_well_formed(candidate)


def test_the_checksum_is_crc32_in_base62_so_scanners_can_check_it():
    body = "kwk_" + "0" * keyformat.RANDOM_LENGTH
    expected = zlib.crc32(body.encode())
    value = 0
    for ch in keyformat.checksum(body):
        value = value * 62 + keyformat.ALPHABET.index(ch)
    assert value == expected


def test_the_display_form_truncates_the_middle_and_hides_most_of_the_key():
    key = keyformat.generate()
    shown = keyformat.display(key)
    assert shown.startswith(key[:8]) and shown.endswith(key[-4:]) and "…" in shown
    assert len(shown.replace("…", "")) <= 12
