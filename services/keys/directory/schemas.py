"""Request and response models of the organization directory: organizations and administrators."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from shared.openapi import NAME, USERNAME
from shared.text import readable_name

# A name people read: NFC, no control, format (bidi, zero-width) or separator characters (shared/text.py).
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$"),
    AfterValidator(readable_name),
    NAME,  # what the documents say of it (JSON Schema cannot say it as pydantic checks it)
]
Username = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9._@-]{1,64}$"), USERNAME]
Level = Literal["system", "tenant"]
Role = Literal["customer_administrator", "administrator"]


class Organization(BaseModel):
    id: UUID
    name: str
    parent_id: UUID | None
    tenant_id: UUID | None
    depth: int = Field(description="0 for the system, 1 for a tenant, deeper for organizations")
    level: Literal["system", "tenant", "organization"]


class OrganizationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    parent_id: UUID


class Administrator(BaseModel):
    id: UUID
    username: str
    email: str
    display_name: str
    level: Level
    role: Role
    organization_id: UUID
    tenant_id: UUID | None
    created_at: datetime


class AdministratorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Username
    email: EmailStr
    display_name: Name
    level: Level
    role: Role = "customer_administrator"
    organization_id: UUID
