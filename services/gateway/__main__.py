"""`python -m services.gateway serve`: the console and its JSON API."""

import argparse
import sys

from services.gateway.config import Settings
from shared.serve import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve the web console and its JSON API")
    parser.parse_args(argv)
    settings = Settings()  # type: ignore[call-arg]
    from services.gateway.app import create_app

    print(f"Keyward console: http://{settings.http_host}:{settings.port}/ (AUTH_MODE={settings.auth_mode})", flush=True)
    serve(create_app(settings), settings, settings.port, graceful_seconds=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
