"""Live updates: every gateway replica reads the lifecycle topic with its own consumer and fans each event
out to the browsers connected to it, each seeing only what its administrator may see.

No consumer group: each replica must see every event (a shared group would split them between replicas),
from the latest offset on (a page reloads its view when it connects, so older events are no news).
"""

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaConsumer
from prometheus_client import Gauge
from tenacity import AsyncRetrying, before_sleep_log, retry_if_not_exception_type, wait_exponential

from shared.events import CloudEvent, decode
from shared.events.envelope import InvalidEvent

log = logging.getLogger(__name__)

LIVE_STREAMS = Gauge("keyward_gateway_live_streams", "Browsers connected to the live-update stream")
QUEUE_SIZE = 100
_KINDS = {
    "io.keyward.apikey.created.v1": "created",
    "io.keyward.apikey.updated.v1": "updated",
    "io.keyward.apikey.expiring.v1": "expiring",
    "io.keyward.apikey.deleted.v1": "deleted",
}


@dataclass(eq=False)
class Subscriber:
    """One browser's stream. `tenant_id` None with `system` True sees everything."""

    system: bool
    tenant_id: UUID | None
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))

    def may_see(self, event: CloudEvent) -> bool:
        return self.system or (self.tenant_id is not None and event.data.tenant_id == self.tenant_id)

    def offer(self, message: dict[str, Any]) -> None:
        if self.queue.full():
            # A browser this far behind only needs to know that it must reload its view.
            while not self.queue.empty():
                self.queue.get_nowait()
            message = {"type": "resync"}
        self.queue.put_nowait(message)


def browser_message(event: CloudEvent) -> dict[str, Any]:
    data = event.data
    return {
        "type": _KINDS.get(event.type, "changed"),
        "key_id": str(data.key_id),
        "organization_id": str(data.organization_id),
        "name": data.name,
    }


class LiveEvents:
    def __init__(self, bootstrap: str, topic: str, client_id: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.client_id = client_id
        self.subscribers: set[Subscriber] = set()
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def subscribe(self, *, system: bool, tenant_id: UUID | None) -> Iterator[Subscriber]:
        subscriber = Subscriber(system=system, tenant_id=tenant_id)
        self.subscribers.add(subscriber)
        LIVE_STREAMS.inc()
        try:
            yield subscriber
        finally:
            self.subscribers.discard(subscriber)
            LIVE_STREAMS.dec()

    def publish(self, event: CloudEvent) -> None:
        message = browser_message(event)
        for subscriber in list(self.subscribers):
            if subscriber.may_see(event):
                subscriber.offer(message)

    async def run(self) -> None:
        """Consumes until cancelled; reconnects after broker outages."""
        async for attempt in AsyncRetrying(
            wait=wait_exponential(multiplier=0.5, max=10),
            retry=retry_if_not_exception_type(asyncio.CancelledError),
            before_sleep=before_sleep_log(log, logging.WARNING),
        ):
            with attempt:
                await self._consume()

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            # Subscribing to a missing topic makes the client log an error every 100 ms: look first.
            if self.topic not in await consumer.topics():
                raise LookupError(f"topic {self.topic} does not exist (yet)")
            consumer.subscribe([self.topic])
            await self._wait_for_positions(consumer)
            self.ready.set()
            # Pages may have missed events while the consumer was away: have them reload their view.
            self._broadcast({"type": "resync"})
            async for message in consumer:
                try:
                    self.publish(decode(message.key, message.value, list(message.headers)))
                except InvalidEvent as exc:
                    log.debug("skipped a message that is not a lifecycle event: %s", exc)
        finally:
            self.ready.clear()
            await consumer.stop()

    async def _wait_for_positions(self, consumer: AIOKafkaConsumer) -> None:
        # Resolving each partition's position fixes "latest" now, so nothing published after ready is missed.
        for _ in range(100):
            assignment = consumer.assignment()
            if assignment:
                for tp in assignment:
                    await consumer.position(tp)
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"no partitions assigned for {self.topic}")

    def _broadcast(self, message: dict[str, Any]) -> None:
        for subscriber in list(self.subscribers):
            subscriber.offer(message)
