"""What the gateway's lifespan builds and every request uses."""

from dataclasses import dataclass

import asyncpg
from fastapi.templating import Jinja2Templates

from services.gateway.auth import JwtVerifier
from services.gateway.config import Settings
from services.gateway.keys_client import KeysClient
from services.gateway.live_stream import LiveStream
from services.gateway.notifier_client import NotifierClient
from services.gateway.oidc import OpenIdProvider
from services.gateway.sessions import SessionStore
from shared.app import database_check, http_check, kafka_check
from shared.observability import Readiness, ReadinessCheck


@dataclass
class GatewayContext:
    settings: Settings
    keys: KeysClient
    notifier: NotifierClient
    verifier: JwtVerifier
    live: LiveStream
    templates: Jinja2Templates
    # The console's sessions (AUTH_MODE=dev or oidc; with jwt the gateway has no console and no database).
    pool: asyncpg.Pool | None = None
    sessions: SessionStore | None = None
    oidc: OpenIdProvider | None = None

    def readiness(self) -> Readiness:
        """The keys service (and the sessions' database) decide readiness: without the notifier, Kafka or the
        OpenID provider the console still works for those signed in."""
        required: dict[str, ReadinessCheck] = {"keys": http_check(self.keys.client)}
        informational: dict[str, ReadinessCheck] = {
            "notifier": http_check(self.notifier.client),
            "live_events": self._live_events,
        }
        if self.pool is not None:  # no console session without it
            required["database"] = database_check(self.pool)
        if self.oidc is not None:  # signed-in administrators and bearer calls go on without it
            informational["oidc_provider"] = self.oidc.metadata
        return Readiness(required, informational)

    async def _live_events(self) -> None:
        if not self.live.ready.is_set():
            await kafka_check(self.settings.kafka_bootstrap_servers)()
            raise RuntimeError("the live-event consumer is not positioned yet")
