"""`python -m services.gateway serve`: the console and its JSON API."""

import sys

from shared.serve import serve, serve_command

# Live-update streams stay open until closed: give in-flight requests 5 s, then end the streams.
GRACEFUL_SHUTDOWN_SECONDS = 5


def run() -> None:
    from services.gateway.app import create_app
    from services.gateway.config import Settings

    settings = Settings()  # type: ignore[call-arg]
    print(f"Keyward console: http://{settings.http_host}:{settings.port}/ (AUTH_MODE={settings.auth_mode})", flush=True)
    serve(create_app(settings), settings, settings.port, graceful_seconds=GRACEFUL_SHUTDOWN_SECONDS)


def main(argv: list[str] | None = None) -> int:
    return serve_command("python -m services.gateway", "serve the web console and its JSON API", run, argv)


if __name__ == "__main__":
    sys.exit(main())
