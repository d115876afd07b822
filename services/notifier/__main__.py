"""`python -m services.notifier serve`: the notifier's HTTP API, event consumer and sender loop."""

import sys

from shared.serve import serve, serve_command


def run() -> None:
    from services.notifier.app import create_app
    from services.notifier.config import Settings

    settings = Settings()  # type: ignore[call-arg]
    serve(create_app(settings), settings, settings.port)


def main(argv: list[str] | None = None) -> int:
    return serve_command(
        "python -m services.notifier", "run the notices API, the event consumer and the sender loop", run, argv
    )


if __name__ == "__main__":
    sys.exit(main())
