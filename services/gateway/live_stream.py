"""The live stream: every gateway replica reads the lifecycle topic with a broadcast consumer of its own
(shared/broadcast.py) and fans each event out to the browsers connected to it, each seeing only what its
administrator may see."""

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from prometheus_client import Gauge

from shared.broadcast import BroadcastConsumer
from shared.events import CloudEvent
from shared.kafka import KafkaAccess

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


class LiveStream:
    def __init__(self, kafka: KafkaAccess, topic: str, client_id: str) -> None:
        self.subscribers: set[Subscriber] = set()
        # Pages may have missed events while the consumer was away: each (re)positioning has them reload.
        self.consumer = BroadcastConsumer(
            kafka,
            topic,
            client_id=client_id,
            on_event=self.publish,
            on_positioned=lambda: self._broadcast({"type": "resync"}),
        )

    @property
    def ready(self) -> asyncio.Event:
        return self.consumer.ready

    async def run(self) -> None:
        await self.consumer.run()

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

    def _broadcast(self, message: dict[str, Any]) -> None:
        for subscriber in list(self.subscribers):
            subscriber.offer(message)
