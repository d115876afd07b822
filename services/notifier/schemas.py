"""Response and request models of the notices API (what the gateway shows on a key's edit page)."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

DeliveryStatus = Literal["pending", "sending", "sent", "failed", "cancelled"]
MAX_KEYS_PER_QUERY = 500


class Notice(BaseModel):
    """One expiry e-mail: a key's threshold for one recipient, and what became of it."""

    key_id: UUID
    threshold_seconds: int
    threshold: str = Field(description="The threshold as configured, e.g. 30d")
    recipient: str = Field(description="The e-mail address it goes (or went) to")
    username: str
    display_name: str
    status: DeliveryStatus
    attempts: int
    sent_at: datetime | None
    last_error: str | None = Field(description="Why it failed, was cancelled or is being retried")
    announced_at: datetime = Field(description="When the keys service announced the threshold")
    updated_at: datetime


class NoticeList(BaseModel):
    items: list[Notice]


class NoticeQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key_ids: Annotated[list[UUID], Field(min_length=1, max_length=MAX_KEYS_PER_QUERY)]
