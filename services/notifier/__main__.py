"""`python -m services.notifier serve`: the notifier's HTTP API, event consumer and sender loop."""

import argparse
import sys

from services.notifier.config import Settings
from shared.serve import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.notifier")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the notices API, the event consumer and the sender loop")
    parser.parse_args(argv)
    settings = Settings()  # type: ignore[call-arg]
    from services.notifier.app import create_app

    serve(create_app(settings), settings, settings.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
