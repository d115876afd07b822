"""`python -m services.keys COMMAND`: serve, relay, import-directory FILE, reencrypt."""

import argparse
import asyncio
import sys
from pathlib import Path

from services.keys.config import RelaySettings, Settings
from services.keys.crypto import KeyCipher, KeyDigester, parse_ring
from services.keys.directory.importer import DirectoryImportError, import_directory, load
from services.keys.rotation import rotate
from shared.db import create_pool
from shared.serve import serve


async def _import(settings: Settings, path: Path) -> None:
    data = load(path)
    # A pooled connection: the services' JSON codecs, which the import's audit rows need.
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            counts = await import_directory(conn, data)
    finally:
        await pool.close()
    print(
        f"imported {path}: {counts['organizations']} new organization(s), {counts['administrators']} administrator(s)"
    )


async def _reencrypt(settings: Settings) -> None:
    if settings.key_encryption_keys is None:
        raise SystemExit(
            "reencrypt needs KEY_ENCRYPTION_KEYS: run it with the keys service's settings, not SERVES=verify"
        )
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        moved = await rotate(
            pool,
            KeyCipher(parse_ring(settings.key_encryption_keys, name="KEY_ENCRYPTION_KEYS", exact_bytes=32)),
            KeyDigester(parse_ring(settings.key_hmac_secrets, name="KEY_HMAC_SECRETS")),
        )
    finally:
        await pool.close()
    print(f"re-encrypted {moved} key(s) under the active encryption key and digest secret")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.keys")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "serve", help="run the HTTP service with its expiry watcher (and relay, unless RUN_RELAY=false)"
    )
    commands.add_parser("relay", help="run the outbox relay alone (with /healthz, /readyz, /metrics on RELAY_PORT)")
    imp = commands.add_parser("import-directory", help="import organizations and administrators from YAML")
    imp.add_argument("file", type=Path)
    commands.add_parser("reencrypt", help="move every key to the active encryption key and digest secret")
    args = parser.parse_args(argv)
    if args.command == "relay":
        from services.keys.app import create_relay_app

        relay_settings = RelaySettings()
        serve(create_relay_app(relay_settings), relay_settings, relay_settings.relay_port)
        return 0
    # The operator commands write the database only (events they cause wait in the outbox for a relay), so
    # they need no Kafka principal.
    settings = Settings() if args.command == "serve" else Settings(run_relay=False)  # type: ignore[call-arg]
    if args.command == "serve":
        from services.keys.app import create_app

        serve(create_app(settings), settings, settings.port)
    elif args.command == "import-directory":
        try:
            asyncio.run(_import(settings, args.file))
        except DirectoryImportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    elif args.command == "reencrypt":
        asyncio.run(_reencrypt(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
