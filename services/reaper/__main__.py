"""`python -m services.reaper serve`: deletes expired keys, through the keys service, as they expire."""

import argparse
import sys

import uvicorn

from services.reaper.config import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.reaper")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the reaper: its event consumer, its loop and /healthz /readyz /metrics")
    parser.parse_args(argv)
    settings = Settings()  # type: ignore[call-arg]
    from services.reaper.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=20,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
