"""Names that people read: one Unicode form, and nothing in them that changes how the text around them reads.

A right-to-left override can make `exe.txt` read `txt.exe`, and zero-width characters make two names that
look the same differ, so a name with a control character, a format character (bidi controls, zero-width
joiners, soft hyphens, tags) or a line or paragraph separator is refused, naming the character. What is
accepted is stored in NFC, so the same name typed on two systems is the same string.
"""

import unicodedata

# Cc control, Cf format (bidi controls, zero-width characters), Cs surrogates, Co private use, Cn unassigned,
# Zl and Zp line and paragraph separators.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def readable_name(value: str) -> str:
    """`value` in NFC; ValueError naming the first character that may not appear in a name."""
    normalized = unicodedata.normalize("NFC", value)
    for char in normalized:
        if unicodedata.category(char) in REFUSED_CATEGORIES:
            described = unicodedata.name(char, "an unassigned or private-use character")
            raise ValueError(f"must not contain invisible or control characters (U+{ord(char):04X} {described})")
    return normalized
