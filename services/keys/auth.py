"""Who is calling: a platform service (bearer token), and the administrator it acts for (signed claim).

Both headers are read from the request, not declared as `Header()` parameters: FastAPI extracts and
validates declared parameters anew on every request, which cost the list call a tenth of its CPU
(docs/benchmarks.md, scenario 2). A missing or malformed header is an ordinary 401 here either way.
"""

from dataclasses import dataclass
from typing import Annotated, Literal
from uuid import UUID

from fastapi import Depends, Request

from services.keys.dependencies import Conn
from services.keys.directory import repository as directory
from shared.auth import ACTING_ADMIN_HEADER, ServiceTokens, verify_acting_admin
from shared.errors import ApiError

AUDIENCE = "keys"


@dataclass(frozen=True, slots=True)
class Actor:
    """An administrator as the keys service sees them: who, and which part of the tree they reach."""

    username: str
    level: Literal["system", "tenant"]
    role: str
    organization_id: UUID
    tenant_id: UUID | None
    # The ltree path of the subtree they reach; None reaches everything (system level).
    reach: str | None

    @property
    def manages_keys(self) -> bool:
        return self.role == "customer_administrator"


async def calling_service(request: Request) -> str:
    tokens: ServiceTokens = request.app.state.service_tokens
    service = tokens.service_for(request.headers.get("authorization"))
    if service is None:
        raise ApiError(401, "a valid service token is required")
    return service


Service = Annotated[str, Depends(calling_service)]


async def acting_admin(request: Request, service: Service, conn: Conn) -> Actor:
    """On the request's own connection (`Conn` is solved once a request), so a call holds one at a time."""
    acting = request.headers.get(ACTING_ADMIN_HEADER)
    if not acting:
        raise ApiError(401, f"the {ACTING_ADMIN_HEADER} header is required for this call")
    claim = verify_acting_admin(
        acting, secret=request.app.state.settings.acting_admin_secret, service=service, audience=AUDIENCE
    )
    if claim is None:
        raise ApiError(401, f"the {ACTING_ADMIN_HEADER} claim is invalid or expired")
    row = await directory.administrator_by_username(conn, claim.username)
    if row is None:
        raise ApiError(401, "the acting administrator is not in the directory")
    reach = None if row["level"] == "system" else row["tenant_path"]
    if row["level"] == "tenant" and reach is None:
        raise ApiError(401, "the acting administrator has no tenant")
    return Actor(
        username=row["username"],
        level=row["level"],
        role=row["role"],
        organization_id=row["organization_id"],
        tenant_id=row["tenant_id"],
        reach=reach,
    )


CurrentActor = Annotated[Actor, Depends(acting_admin)]


async def key_manager(actor: CurrentActor) -> Actor:
    if not actor.manages_keys:
        raise ApiError(403, "only customer administrators manage API keys")
    return actor


KeyManager = Annotated[Actor, Depends(key_manager)]
