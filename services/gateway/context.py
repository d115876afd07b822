"""What the gateway's lifespan builds and every request uses."""

from dataclasses import dataclass

from fastapi.templating import Jinja2Templates

from services.gateway.auth import JwtVerifier, Sessions
from services.gateway.config import Settings
from services.gateway.keys_client import KeysClient
from services.gateway.live_stream import LiveStream
from services.gateway.notifier_client import NotifierClient
from shared.app import http_check, kafka_check
from shared.observability import Readiness


@dataclass
class GatewayContext:
    settings: Settings
    keys: KeysClient
    notifier: NotifierClient
    sessions: Sessions
    verifier: JwtVerifier
    live: LiveStream
    templates: Jinja2Templates

    def readiness(self) -> Readiness:
        """Only the keys service decides readiness: without the notifier or Kafka the console still works."""
        return Readiness(
            {"keys": http_check(self.keys.client)},
            {"notifier": http_check(self.notifier.client), "live_events": self._live_events},
        )

    async def _live_events(self) -> None:
        if not self.live.ready.is_set():
            await kafka_check(self.settings.kafka_bootstrap_servers)()
            raise RuntimeError("the live-event consumer is not positioned yet")
