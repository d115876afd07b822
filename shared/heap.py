"""The garbage collector and request latency: what a service does once it has started.

Python's cyclic collector now and then examines every tracked object in the oldest generation. After
startup that is mostly modules, classes, FastAPI's routes and pydantic's validators: over a hundred
thousand objects that live as long as the process. A burst of short-lived objects (a reap of a thousand
keys, a relay batch) triggers such a full collection, and the event loop stops for it, which verify's p99
showed during a paced reap (docs/benchmarks.md, "Figures behind the code").
"""

import gc
import logging

log = logging.getLogger(__name__)


def freeze_startup_heap() -> None:
    """Call once the service has started: collects, then moves every object alive into a permanent
    generation that collections skip (`gc.freeze`). Objects created later are collected as before."""
    gc.collect()
    gc.freeze()
    log.debug("startup heap frozen: %d objects", gc.get_freeze_count())
