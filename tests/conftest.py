"""Every test tier sees the development defaults of deploy/local/dev.env where a variable is unset."""

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_DEFAULT = re.compile(r"^([A-Z_]+)=\$\{\1:-(.*)\}$")

for line in (ROOT / "deploy/local/dev.env").read_text().splitlines():
    match = _DEFAULT.match(line.strip())
    if match:
        os.environ.setdefault(match.group(1), match.group(2))

import logging  # noqa: E402

import pytest  # noqa: E402

# The shared helpers' asserts show the values they compared, as the tests' own do.
pytest.register_assert_rewrite("tests.fixtures")

# Every request would be logged at INFO by the HTTP client; failures show what matters without it.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("mail.log").setLevel(logging.WARNING)
