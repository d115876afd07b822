"""Running a service: one uvicorn set-up for all four, so they shut down the same way on SIGTERM."""

import uvicorn
from fastapi import FastAPI

from shared.settings import ServiceSettings

# Kubernetes gives a pod 30 s by default after SIGTERM; finish in-flight requests well within that.
GRACEFUL_SHUTDOWN_SECONDS = 20


def serve(app: FastAPI, settings: ServiceSettings, port: int) -> None:
    uvicorn.run(
        app,
        host=settings.http_host,
        port=port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
