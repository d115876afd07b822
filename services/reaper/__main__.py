"""`python -m services.reaper serve`: deletes expired keys, through the keys service, as they expire."""

import argparse
import sys

from services.reaper.config import Settings
from shared.serve import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.reaper")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the reaper: its event consumer, its loop and /healthz /readyz /metrics")
    parser.parse_args(argv)
    settings = Settings()  # type: ignore[call-arg]
    from services.reaper.app import create_app

    serve(create_app(settings), settings, settings.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
