"""A broadcast consumer: every lifecycle event to this process, from the moment it is positioned on.

No consumer group: every replica must see every event (a group would split them between replicas), and
from the latest offset on (a reader that (re)connects reloads its view, so older events are no news).
`EventConsumer` (shared/consumer.py) is the other kind: a group's share of the events, each handled once.
"""

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer

from shared.events import CloudEvent, decode
from shared.events.envelope import InvalidEvent
from shared.kafka import KafkaAccess, reconnecting

log = logging.getLogger(__name__)


class BroadcastConsumer:
    def __init__(
        self,
        kafka: KafkaAccess,
        topic: str,
        *,
        client_id: str,
        on_event: Callable[[CloudEvent], None],
        on_positioned: Callable[[], None],
    ) -> None:
        """`on_positioned` runs each time the consumer is in place again (events may have been missed)."""
        self.kafka = kafka
        self.topic = topic
        self.client_id = client_id
        self.on_event = on_event
        self.on_positioned = on_positioned
        self.ready = asyncio.Event()

    async def run(self) -> None:
        """Consumes until cancelled; reconnects after broker outages."""
        await reconnecting(self._consume, log)

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            **self.kafka.options(),
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
            self.on_positioned()
            async for message in consumer:
                try:
                    event = decode(message.key, message.value, list(message.headers))
                except InvalidEvent as exc:
                    log.debug("skipped a message that is not a lifecycle event: %s", exc)
                    continue
                self.on_event(event)
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
