"""One model per event's `data`, named in the past tense. None of them carries the key itself."""

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

DeleteReason = Literal["manual", "bulk", "expired"]


class KeyEventData(BaseModel):
    """The fields every lifecycle event carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: ClassVar[str]

    key_id: UUID
    name: str = Field(min_length=1, max_length=100)
    organization_id: UUID
    tenant_id: UUID | None = Field(description="The tenant above the organization; null for system-level keys")
    created_by: str
    created_at: datetime
    expires_at: datetime
    key_display: str = Field(description="The key truncated in the middle, as the console shows it")


class KeyCreated(KeyEventData):
    type: ClassVar[str] = "io.keyward.apikey.created.v1"


class KeyUpdated(KeyEventData):
    type: ClassVar[str] = "io.keyward.apikey.updated.v1"
    previous_name: str


class KeyExpiring(KeyEventData):
    type: ClassVar[str] = "io.keyward.apikey.expiring.v1"
    threshold_seconds: int = Field(gt=0, description="The notice threshold the key crossed")
    days_left: int = Field(ge=0, description="Whole days until expiry, rounded up")
    organization_names: list[str] | None = Field(
        default=None,
        description=(
            "Names of the organizations from the tenant down to the key's organization, as they stood when "
            "the event was written (absent from events written before this field existed)"
        ),
    )


class KeyDeleted(KeyEventData):
    type: ClassVar[str] = "io.keyward.apikey.deleted.v1"
    reason: DeleteReason
    deleted_by: str = Field(description="The administrator's username, or 'system' for an expired key")


class KeyRotated(KeyEventData):
    """A key was rolled: the fields every event carries are the predecessor's (its `expires_at` the end of the
    overlap), beside them its successor. Written with the successor's `created` and the predecessor's
    `updated`, in the same transaction."""

    type: ClassVar[str] = "io.keyward.apikey.rotated.v1"
    successor_id: UUID = Field(description="The key that replaces this one (same name and organization)")
    successor_key_display: str = Field(description="The successor truncated in the middle, as the console shows it")
    successor_expires_at: datetime
    overlap_ends_at: datetime = Field(description="When the predecessor stops verifying: its expiry, now shortened")
    rotated_by: str = Field(description="The administrator's username")


EVENT_TYPES: dict[str, type[KeyEventData]] = {
    model.type: model for model in (KeyCreated, KeyUpdated, KeyExpiring, KeyDeleted, KeyRotated)
}
