"""What the API documents say of request fields whose rules JSON Schema cannot state the way pydantic checks
them: the keys service enforces them, and the gateway, which passes its callers' requests on, publishes the
same (shared/errors.py documents the error answers).

Pydantic trims a name's or username's surrounding whitespace (Unicode White_Space) before it counts its
length and matches its pattern, and a name may hold no character of `shared.text.REFUSED_CATEGORIES`; the
patterns here say that of the string as sent. The character classes are explicit code point ranges: BMP
characters as `\\uXXXX`, others as themselves, so Python's `re`, ECMA 262 regular expressions (with the `u`
flag, as JSON Schema validators use them) and Rust's `regex` read them alike.
"""

import functools
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import GetJsonSchemaHandler, WithJsonSchema
from pydantic_core import CoreSchema

from shared.text import REFUSED_CATEGORIES

# What pydantic's `strip_whitespace` trims (Rust's `str::trim`: the Unicode White_Space characters).
WHITESPACE = frozenset(
    (*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000)
)
NAME_MAX_LENGTH = 100
USERNAME_PATTERN = "[A-Za-z0-9._@-]{1,64}"


@dataclass(frozen=True)
class Published:
    """Annotation: the field's JSON Schema in the documents is `schema()` (called when a document is built),
    whatever pydantic would derive from the type. It checks nothing: the gateway's fields carry it alone, the
    keys service's beside the constraints that enforce what it says."""

    schema: Callable[[], dict[str, Any]]

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return self.schema()


def _escape(code_point: int) -> str:
    return f"\\u{code_point:04x}" if code_point <= 0xFFFF else chr(code_point)


def character_class(code_points: Iterable[int]) -> str:
    """A regular expression character class of exactly these code points, as ranges."""
    ranges: list[tuple[int, int]] = []
    for cp in sorted(code_points):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return "[" + "".join(_escape(a) if a == b else f"{_escape(a)}-{_escape(b)}" for a, b in ranges) + "]"


def _name_characters() -> tuple[set[int], set[int]]:
    """The characters a name may hold, and those of them that are not whitespace."""
    allowed = {
        cp
        for cp in range(0x110000)
        if not 0xD800 <= cp <= 0xDFFF and unicodedata.category(chr(cp)) not in REFUSED_CATEGORIES
    }
    return allowed, allowed - WHITESPACE


@functools.cache
def name_schema() -> dict[str, Any]:
    """A name (`services.keys.directory.schemas.Name`): 1-100 characters once trimmed, none of them a control,
    format, private-use, unassigned or line/paragraph separator character.

    The pattern reads a name as trimmed whitespace, then up to 99 allowed characters and a last one that is
    not whitespace (what trimming leaves ends there), then trimmed whitespace: so it counts the length after
    trimming, which a `maxLength` cannot.
    """
    allowed, visible = _name_characters()
    trimmed = character_class(WHITESPACE)
    return {
        "type": "string",
        "minLength": 1,
        "pattern": f"^{trimmed}*{character_class(allowed)}{{0,{NAME_MAX_LENGTH - 1}}}"
        f"{character_class(visible)}{trimmed}*$",
        "description": f"1-{NAME_MAX_LENGTH} characters, without control, format (bidi, zero-width), private-use, "
        "unassigned or line and paragraph separator characters; surrounding whitespace is trimmed (and not "
        "counted), the rest stored in Unicode NFC",
    }


@functools.cache
def username_schema() -> dict[str, Any]:
    """A username (`services.keys.directory.schemas.Username`), surrounding whitespace trimmed."""
    trimmed = character_class(WHITESPACE)
    return {
        "type": "string",
        "pattern": f"^{trimmed}*{USERNAME_PATTERN}{trimmed}*$",
        "description": "1-64 letters, digits and `._@-`; surrounding whitespace is trimmed",
    }


NAME = Published(name_schema)
USERNAME = Published(username_schema)


# A roll's `overlap` (issue 21): a duration as the configuration writes them (shared.durations), 0s to 365d.
OVERLAP_DESCRIPTION = (
    "How long the key rolled goes on verifying beside its successor, e.g. 7d, 12h, 90s (0s to 365d; default "
    "ROTATION_OVERLAP); never past its own expiry"
)
OVERLAP = WithJsonSchema({"type": "string", "pattern": r"^\s*\d+\s*[smhd]\s*$", "examples": ["7d", "12h"]})
