"""`python -m services.gateway serve`: the console and its JSON API."""

import argparse
import sys

import uvicorn

from services.gateway.config import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve the web console and its JSON API")
    parser.parse_args(argv)
    settings = Settings()  # type: ignore[call-arg]
    from services.gateway.app import create_app

    print(f"Keyward console: http://{settings.http_host}:{settings.port}/ (AUTH_MODE={settings.auth_mode})", flush=True)
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
