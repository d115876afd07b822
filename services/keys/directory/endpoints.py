"""HTTP routes of the organization directory."""

from uuid import UUID

from fastapi import APIRouter

from services.keys.auth import CurrentActor, Service
from services.keys.dependencies import Conn
from services.keys.directory import repository, service
from services.keys.directory.schemas import Administrator, AdministratorCreate, Organization, OrganizationCreate
from shared.errors import NotFound

router = APIRouter(prefix="/v1", tags=["directory"])


@router.get("/me", response_model=Administrator)
async def me(actor: CurrentActor, conn: Conn) -> Administrator:
    """The acting administrator, as the directory knows them."""
    row = await repository.administrator_by_username(conn, actor.username)
    if row is None:
        raise NotFound("administrator")
    return Administrator.model_validate({k: row[k] for k in Administrator.model_fields})


@router.get("/organizations", response_model=list[Organization])
async def list_organizations(actor: CurrentActor, conn: Conn) -> list[Organization]:
    """The organizations the acting administrator reaches, parents before children."""
    return await service.list_organizations(conn, actor)


@router.post("/organizations", response_model=Organization, status_code=201)
async def create_organization(body: OrganizationCreate, actor: CurrentActor, conn: Conn) -> Organization:
    """Creates an organization below one the acting administrator reaches."""
    return await service.create_organization(conn, actor, body)


@router.get("/administrators", response_model=list[Administrator])
async def list_administrators(
    actor: CurrentActor, conn: Conn, organization_id: UUID | None = None
) -> list[Administrator]:
    """Administrators the acting administrator reaches."""
    return await service.list_administrators(conn, actor, organization_id)


@router.post("/administrators", response_model=Administrator, status_code=201)
async def create_administrator(body: AdministratorCreate, actor: CurrentActor, conn: Conn) -> Administrator:
    """Creates an administrator in an organization the acting administrator reaches."""
    return await service.create_administrator(conn, actor, body)


@router.get("/directory/administrators", response_model=list[Administrator])
async def all_administrators(_: Service, conn: Conn) -> list[Administrator]:
    """For platform services (the gateway's development sign-in page): every administrator."""
    rows = await repository.administrators(conn, None, None)
    return [Administrator.model_validate(dict(r)) for r in rows]


@router.get("/organizations/{organization_id}/path", response_model=list[Organization])
async def organization_path(organization_id: UUID, _: Service, conn: Conn) -> list[Organization]:
    """For platform services (the notifier's e-mails): the organization and its ancestors, the system first."""
    rows = await repository.ancestors(conn, organization_id)
    if not rows:
        raise NotFound("organization")
    return [service.to_organization(r) for r in rows]


@router.get("/tenants/{tenant_id}/customer-administrators", response_model=list[Administrator])
async def tenant_customer_administrators(tenant_id: UUID, _: Service, conn: Conn) -> list[Administrator]:
    """For platform services (the notifier): the tenant-level customer administrators of a tenant, now."""
    rows = await repository.tenant_customer_administrators(conn, tenant_id)
    return [Administrator.model_validate(dict(r)) for r in rows]
