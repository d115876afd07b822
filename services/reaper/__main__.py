"""`python -m services.reaper serve`: deletes expired keys, through the keys service, as they expire."""

import sys

from shared.serve import serve, serve_command


def run() -> None:
    from services.reaper.app import create_app
    from services.reaper.config import Settings

    settings = Settings()  # type: ignore[call-arg]
    serve(create_app(settings), settings, settings.port)


def main(argv: list[str] | None = None) -> int:
    return serve_command(
        "python -m services.reaper",
        "run the reaper: its event consumer, its loop and /healthz /readyz /metrics",
        run,
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
