"""HTTP routes of the organization directory."""

from uuid import UUID

from fastapi import APIRouter

from services.keys.auth import CurrentActor, Service
from services.keys.dependencies import Conn
from services.keys.directory import service
from services.keys.directory.schemas import Administrator, AdministratorCreate, Organization, OrganizationCreate

router = APIRouter(prefix="/v1", tags=["directory"])


@router.get("/me", response_model=Administrator)
async def me(actor: CurrentActor, conn: Conn) -> Administrator:
    """The acting administrator, as the directory knows them."""
    return await service.administrator(conn, actor)


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
    return await service.all_administrators(conn)


@router.get("/organizations/{organization_id}/path", response_model=list[Organization])
async def organization_path(organization_id: UUID, _: Service, conn: Conn) -> list[Organization]:
    """For platform services (the notifier's e-mails): the organization and its ancestors, the system first."""
    return await service.organization_path(conn, organization_id)


@router.get("/tenants/{tenant_id}/customer-administrators", response_model=list[Administrator])
async def tenant_customer_administrators(tenant_id: UUID, _: Service, conn: Conn) -> list[Administrator]:
    """For platform services (the notifier): the tenant-level customer administrators of a tenant, now."""
    return await service.tenant_customer_administrators(conn, tenant_id)
