"""`python -m shared.migrate [service ...]`: applies every service's migrations (all when none named)."""

import asyncio
import os
import sys
from pathlib import Path

from shared.db import migrate

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"
DEFAULT_DSN = "postgresql://keyward:keyward@127.0.0.1:55432/keyward"


def migration_folders(names: list[str]) -> dict[str, Path]:
    found = {p.parent.name: p for p in sorted(SERVICES_DIR.glob("*/migrations")) if any(p.glob("*.sql"))}
    if not names:
        return found
    unknown = [n for n in names if n not in found]
    if unknown:
        raise SystemExit(f"no migrations for: {', '.join(unknown)} (known: {', '.join(found)})")
    return {n: found[n] for n in names}


async def migrate_all(dsn: str, names: list[str]) -> None:
    for service, folder in migration_folders(names).items():
        applied = await migrate(dsn, service, folder)
        print(f"{service}: {len(applied)} migration(s) applied" + (f" ({', '.join(applied)})" if applied else ""))


if __name__ == "__main__":
    asyncio.run(migrate_all(os.environ.get("DATABASE_URL", DEFAULT_DSN), sys.argv[1:]))
