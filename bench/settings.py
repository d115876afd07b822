"""What a run is: its mode, its sizes and the environment it inherits from deploy/local/dev.env."""

import os
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_ENV = ROOT / "deploy" / "local" / "dev.env"
_DEFAULTED = re.compile(r"^([A-Z_][A-Z0-9_]*)=\$\{\1:-(.*)\}$")


def load_dev_env(path: Path = DEV_ENV) -> None:
    """Applies dev.env's `NAME=${NAME:-default}` lines where NAME is unset, as `make` does."""
    for line in path.read_text().splitlines():
        match = _DEFAULTED.match(line.strip())
        if match and match.group(1) not in os.environ:
            os.environ[match.group(1)] = match.group(2)


@dataclass(frozen=True)
class Sizes:
    mode: str
    verify_keys: int
    verify_seconds: float
    list_keys: int
    organizations: int
    list_seconds: float
    export_small: int
    export_large: int
    relay_events: int
    relay_rate: int
    relay_seconds: float
    notifier_events: int
    notifier_admins: int
    reaper_keys: int
    # Verify's idle p99 is measured over this long before the expiry: about as long as the reaping lasts,
    # so that both windows are as likely to catch the machine's rare hiccups (a checkpoint, say).
    reaper_probe_seconds: float
    # REAPER_SPREAD for the run: the reaper's default (45s) in full, shorter in quick to keep it quick.
    reaper_spread: str | None
    # Verify beside slow exports: how many downloads at 1 KB/s, and how long verify is measured idle and beside
    # them (each export is the whole table: `list_keys` keys, more than the sockets between them hold).
    slow_exports: int
    slow_export_seconds: float


QUICK = Sizes(
    mode="quick",
    verify_keys=10_000,
    verify_seconds=6,
    list_keys=100_000,
    organizations=1_000,
    list_seconds=1.5,
    export_small=20_000,
    export_large=100_000,
    relay_events=10_000,
    relay_rate=200,
    relay_seconds=10,
    notifier_events=100,
    notifier_admins=10,
    reaper_keys=10_000,
    reaper_probe_seconds=10,
    reaper_spread="10s",
    slow_exports=20,
    slow_export_seconds=10,
)

FULL = Sizes(
    mode="full",
    verify_keys=100_000,
    verify_seconds=20,
    list_keys=1_000_000,
    organizations=1_000,
    list_seconds=5,
    export_small=100_000,
    export_large=1_000_000,
    relay_events=100_000,
    relay_rate=200,
    relay_seconds=20,
    notifier_events=1_000,
    notifier_admins=10,
    reaper_keys=100_000,
    reaper_probe_seconds=40,
    reaper_spread=None,
    slow_exports=20,
    slow_export_seconds=30,
)
