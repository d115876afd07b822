from dataclasses import dataclass

from fastapi.templating import Jinja2Templates

from services.gateway.auth import JwtVerifier, Sessions
from services.gateway.config import Settings
from services.gateway.events import LiveEvents
from services.gateway.upstream import KeysService, Notifier


@dataclass
class GatewayContext:
    """What the lifespan builds and every request uses."""

    settings: Settings
    keys: KeysService
    notifier: Notifier
    sessions: Sessions
    verifier: JwtVerifier
    live: LiveEvents
    templates: Jinja2Templates
