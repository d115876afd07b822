"""Request and response models of the keys API: keys, their list and the calls of other platform services."""

from datetime import datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from services.keys.directory.schemas import Name
from shared.durations import parse_duration
from shared.openapi import OVERLAP, OVERLAP_DESCRIPTION

SortField = Literal["name", "organization", "expires_at", "created_by", "created_at", "key"]
SORT_ALIASES: dict[str, SortField] = {
    "name": "name",
    "organization": "organization",
    "organization_name": "organization",
    "expires_at": "expires_at",
    "expiration": "expires_at",
    "expiration_date": "expires_at",
    "created_by": "created_by",
    "created_at": "created_at",
    "key": "key",
    "key_display": "key",
}


class Key(BaseModel):
    id: UUID
    name: str
    organization_id: UUID
    organization_name: str
    tenant_id: UUID | None
    created_by: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    key_display: str
    replaces: UUID | None = Field(None, description="The key this one replaced (rolled), if any")
    replaced_by: UUID | None = Field(None, description="The key that replaced this one (rolled), if any")
    first_used_at: datetime | None = Field(None, description="The first verify that found the key, if any")


class KeyWithSecret(Key):
    key: str = Field(description="The full API key")
    successor_in_use_since: datetime | None = Field(
        None, description="For a key replaced: its successor's first verify, if it has been used"
    )


MAX_OVERLAP = timedelta(days=365)


class KeyRoll(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap: Annotated[timedelta, OVERLAP] | None = Field(None, description=OVERLAP_DESCRIPTION)

    @field_validator("overlap", mode="before")
    @classmethod
    def a_duration_of_at_most_a_year(cls, value: object) -> timedelta | None:
        """As the configuration writes durations, and only so: a number is no duration here."""
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("a duration such as 7d, 12h or 90s")
        try:
            overlap = parse_duration(value, zero=True)
        except OverflowError:
            raise ValueError("at most 365d") from None
        if overlap > MAX_OVERLAP:
            raise ValueError("at most 365d")
        return overlap


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    organization_id: UUID


class KeyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


class KeyPage(BaseModel):
    items: list[Key]
    next_cursor: str | None
    total: int = Field(description="Keys the filter matches; for a search, at most 1,000 (see total_exact)")
    total_exact: bool = Field(True, description="False when a search matched more than `total` keys")


class BulkDelete(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: Annotated[list[UUID], Field(min_length=1, max_length=1000)]


class BulkDeleted(BaseModel):
    deleted: list[UUID]


# The longest `key` a verify request may present (a real key is 46 characters).
MAX_PRESENTED_KEY = 512


class VerifyRequest(BaseModel):
    # Lenient on purpose: a malformed key is an ordinary "invalid" answer, not a 422 that tells it apart.
    key: Annotated[str, Field(max_length=MAX_PRESENTED_KEY)]


class VerifyResponse(BaseModel):
    valid: bool
    key_id: UUID | None = None
    organization_id: UUID | None = None
    tenant_id: UUID | None = None
    expires_at: datetime | None = None


class ListQuery(BaseModel):
    organization_id: UUID | None = None
    q: Annotated[str | None, Field(max_length=100)] = None
    sort: SortField = "name"
    order: Literal["asc", "desc"] = "asc"
    limit: Annotated[int, Field(ge=1, le=500)] = 50
    cursor: Annotated[str | None, Field(max_length=1000)] = None


class ReapRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Strict: a JSON true or "5" is no batch size.
    limit: Annotated[StrictInt, Field(ge=1, le=5000)] = 1000


class ReapResult(BaseModel):
    deleted: int
    more: bool = Field(description="True when the batch was full: call again")


class StandingQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key_ids: Annotated[list[UUID], Field(min_length=1, max_length=1000)]


class KeyStanding(BaseModel):
    """A key as it stands now, for the notifier's e-mails: what a lifecycle event says, from the source."""

    key_id: UUID
    tenant_id: UUID | None
    organization_id: UUID
    organization_names: list[str] = Field(description="From the tenant down to the key's organization")
    name: str
    key_display: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    replaced_by: UUID | None = Field(None, description="The key's successor, when it was rolled")
    successor_in_use_since: datetime | None = Field(None, description="The successor's first verify, if any")


class KeyStandings(BaseModel):
    items: list[KeyStanding] = Field(
        description="The keys asked for that exist and have not expired; a key left out does not, or no longer"
    )


class ExpiryStatus(BaseModel):
    oldest_expired_at: datetime | None = Field(description="The oldest expired key still present, if any")
    expired: int = Field(description="How many expired keys are still present, counted up to 1,000,000")
    next_expiry_at: datetime | None
    now: datetime
