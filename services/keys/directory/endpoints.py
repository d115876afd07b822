"""HTTP routes of the organization directory."""

from uuid import UUID

from fastapi import APIRouter

from services.keys.auth import SERVICE_ERRORS, AsGateway, AsNotifier, CurrentActor
from services.keys.dependencies import Conn, Ctx
from services.keys.directory import service
from services.keys.directory.schemas import Administrator, AdministratorCreate, Organization, OrganizationCreate
from shared.errors import ApiError, error_responses

router = APIRouter(prefix="/v1", tags=["directory"], responses=SERVICE_ERRORS)
NOT_A_MANAGER = "The acting administrator is not a customer administrator"
OUT_OF_REACH = "No such organization, or it is outside the acting administrator's reach"


@router.get("/me", response_model=Administrator)
async def me(actor: CurrentActor, conn: Conn) -> Administrator:
    """The acting administrator, as the directory knows them."""
    return await service.administrator(conn, actor)


@router.get("/organizations", response_model=list[Organization])
async def list_organizations(actor: CurrentActor, conn: Conn) -> list[Organization]:
    """The organizations the acting administrator reaches, parents before children."""
    return await service.list_organizations(conn, actor)


@router.post(
    "/organizations",
    response_model=Organization,
    status_code=201,
    responses=error_responses(
        400,
        413,
        422,
        described={
            403: NOT_A_MANAGER,
            404: OUT_OF_REACH,
            409: "The parent has an organization of that name (case-insensitive)",
        },
    ),
)
async def create_organization(body: OrganizationCreate, actor: CurrentActor, conn: Conn) -> Organization:
    """Creates an organization below one the acting administrator reaches."""
    return await service.create_organization(conn, actor, body)


@router.get(
    "/administrators", response_model=list[Administrator], responses=error_responses(422, described={404: OUT_OF_REACH})
)
async def list_administrators(
    actor: CurrentActor, conn: Conn, organization_id: UUID | None = None
) -> list[Administrator]:
    """Administrators the acting administrator reaches."""
    return await service.list_administrators(conn, actor, organization_id)


@router.post(
    "/administrators",
    response_model=Administrator,
    status_code=201,
    responses=error_responses(
        400,
        413,
        described={
            403: f"{NOT_A_MANAGER}, or a tenant-level one creating a system-level administrator",
            404: OUT_OF_REACH,
            409: "The username is taken",
            422: "A field is invalid (`fields` names each), or the level does not fit the organization: a "
            "system-level administrator belongs to the system organization, a tenant-level one to a tenant or "
            "an organization below one",
        },
    ),
)
async def create_administrator(body: AdministratorCreate, actor: CurrentActor, conn: Conn) -> Administrator:
    """Creates an administrator in an organization the acting administrator reaches."""
    return await service.create_administrator(conn, actor, body)


@router.get(
    "/directory/administrators",
    response_model=list[Administrator],
    responses=error_responses(described={404: "Outside `KEYWARD_ENV=dev` this call does not exist"}),
)
async def all_administrators(_: AsGateway, conn: Conn, ctx: Ctx) -> list[Administrator]:
    """For the gateway's development sign-in page, on a developer's machine only: every administrator."""
    if ctx.settings.keyward_env != "dev":
        raise ApiError(404, "not found", code="not_found")
    return await service.all_administrators(conn)


@router.get(
    "/organizations/{organization_id}/path",
    response_model=list[Organization],
    responses=error_responses(422, described={404: "No such organization"}),
)
async def organization_path(organization_id: UUID, _: AsNotifier, conn: Conn) -> list[Organization]:
    """For platform services (the notifier's e-mails): the organization and its ancestors, the system first."""
    return await service.organization_path(conn, organization_id)


@router.get(
    "/tenants/{tenant_id}/customer-administrators",
    response_model=list[Administrator],
    responses=error_responses(422),
)
async def tenant_customer_administrators(tenant_id: UUID, _: AsNotifier, conn: Conn) -> list[Administrator]:
    """For platform services (the notifier): the tenant-level customer administrators of a tenant, now."""
    return await service.tenant_customer_administrators(conn, tenant_id)
