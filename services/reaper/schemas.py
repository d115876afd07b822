"""The answers of the keys service's calls for the reaper, as the reaper reads them."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class ReapResult(BaseModel):
    model_config = ConfigDict(extra="ignore")
    deleted: int
    more: bool


class ExpiryStatus(BaseModel):
    model_config = ConfigDict(extra="ignore")
    oldest_expired_at: datetime | None
    # How many expired keys are still present (0 from a keys service that predates the count: no pacing).
    expired: int = 0
    next_expiry_at: datetime | None
    now: datetime
