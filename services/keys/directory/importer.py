"""The operators' YAML import: organizations as a nested tree, administrators by organization path.

    organizations:
      - name: Keyward
        children:
          - name: Acme Health
            children: [{name: Cardiology}]
    administrators:
      - {username: admin, email: admin@example.com, display_name: Ada Admin, level: system,
         organization: Keyward}
      - {username: acme, email: acme@example.com, display_name: Acme Admin, level: tenant,
         organization: Keyward/Acme Health}

Re-running it is safe: existing organizations are kept, existing administrators updated.
"""

from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import yaml
from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError

from services.keys.directory import repository
from services.keys.directory.schemas import Level, Name, Role, Username
from services.keys.directory.service import administrator_details

# Who the audit log names for what the directory file creates.
IMPORT_ACTOR = "directory-import"


class OrgNode(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    children: list["OrgNode"] = Field(default_factory=list)


class AdminEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Username
    email: EmailStr
    display_name: Name
    level: Level
    role: Role = "customer_administrator"
    organization: str = Field(description="Names from the root down, joined by '/'")


class DirectoryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organizations: list[OrgNode] = Field(default_factory=list)
    administrators: list[AdminEntry] = Field(default_factory=list)


class DirectoryImportError(ValueError):
    pass


def load(path: Path) -> DirectoryFile:
    try:
        raw = yaml.safe_load(path.read_text())
        return DirectoryFile.model_validate(raw or {})
    except (yaml.YAMLError, ValidationError, OSError) as exc:
        raise DirectoryImportError(f"{path}: {exc}") from exc


async def _ensure(
    conn: asyncpg.Connection, node: OrgNode, parent: asyncpg.Record | None, counts: dict[str, int]
) -> None:
    row = await repository.child_by_name(conn, parent["id"] if parent else None, node.name)
    if row is None:
        row = await repository.insert_organization(conn, uuid4(), node.name, parent)
        details = {"name": row["name"], "parent_id": str(parent["id"]) if parent else None}
        await repository.audit(conn, IMPORT_ACTOR, "create_organization", row["id"], details)
        counts["organizations"] += 1
    for child in node.children:
        await _ensure(conn, child, row, counts)


async def import_directory(conn: asyncpg.Connection, data: DirectoryFile) -> dict[str, int]:
    counts = {"organizations": 0, "administrators": 0}
    async with conn.transaction():
        for node in data.organizations:
            await _ensure(conn, node, None, counts)
        for entry in data.administrators:
            org = await repository.organization_by_path_names(conn, [p.strip() for p in entry.organization.split("/")])
            if org is None:
                raise DirectoryImportError(f"administrator {entry.username}: no organization {entry.organization!r}")
            if (entry.level == "system") != (org["depth"] == 0):
                raise DirectoryImportError(
                    f"administrator {entry.username}: a {entry.level}-level administrator "
                    f"cannot belong to {entry.organization!r}"
                )
            fields: dict[str, Any] = entry.model_dump(exclude={"organization"}) | {"organization_id": org["id"]}
            row = await repository.insert_administrator(conn, uuid4(), fields, org["tenant_id"], replace=True)
            await repository.audit(conn, IMPORT_ACTOR, "create_administrator", org["id"], administrator_details(row))
            counts["administrators"] += 1
    return counts
