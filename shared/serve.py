"""Running a service: one uvicorn set-up for all four, so they shut down the same way on SIGTERM."""

import argparse
import signal
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from shared.settings import ServiceSettings

# Kubernetes gives a pod 30 s by default after SIGTERM; finish in-flight requests well within that.
GRACEFUL_SHUTDOWN_SECONDS = 20


def serve(
    app: FastAPI, settings: ServiceSettings, port: int, *, graceful_seconds: int = GRACEFUL_SHUTDOWN_SECONDS
) -> None:
    """Runs until SIGTERM or SIGINT, then finishes in-flight work and exits 0."""
    # uvicorn re-raises the signal after its graceful shutdown, which would make the exit code 143 (and
    # Kubernetes count a clean stop as a failure); with this no-op handler the process exits normally.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=graceful_seconds,
    )


def serve_command(prog: str, description: str, run: Callable[[], None], argv: list[str] | None = None) -> int:
    """The `python -m services.<name> serve` command line of a service that has no other command."""
    parser = argparse.ArgumentParser(prog=prog)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help=description)
    parser.parse_args(argv)
    run()
    return 0
