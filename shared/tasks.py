"""Ending a service's background tasks when its lifespan closes."""

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


async def cancel_all(tasks: Iterable[asyncio.Task[Any] | None], *, timeout: float | None = None) -> None:
    """Cancels the tasks and waits until they have ended, or `timeout` seconds (then says which it left)."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    if not running:
        return
    done, pending = await asyncio.wait(running, timeout=timeout)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.warning("task %s had failed: %r", task.get_name(), task.exception())
    if pending:
        log.warning("stopping without waiting for: %s", ", ".join(task.get_name() for task in pending))
