"""The reaper's settings: how often it passes, how fast it deletes, and how a mass expiry is paced."""

from datetime import timedelta
from typing import ClassVar

from pydantic import Field

from shared.durations import Duration, DurationOrZero
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    port: int = 8083
    keys_url: str = "http://127.0.0.1:8081"
    # The longest an expired key may still exist: the reaper never sleeps longer than this.
    reaper_interval: Duration = timedelta(seconds=60)
    # Keys deleted per call to the keys service, each call one transaction there (its maximum is 5000).
    reaper_batch_size: int = Field(default=1000, ge=1, le=5000)
    # Keys per call in a paced pass (a mass expiry, or REAPER_MAX_RATE): each batch sets off a burst of work
    # (the deletion, its events, their consumers) that verify waits behind where they share cores, and
    # smaller batches keep the bursts short (docs/benchmarks.md, scenario 6).
    reaper_paced_batch_size: int = Field(default=200, ge=1, le=5000)
    # Batches in flight at once while a backlog lasts; SKIP LOCKED keeps them from colliding.
    reaper_concurrency: int = Field(default=2, ge=1, le=16)
    # A mass expiry (more expired keys than one batch) is deleted at an even pace, to be gone this long after
    # the oldest of them expired, rather than all at once: at full speed the deletion, its events and their
    # consumers take every core for a few seconds, and verify's latency with them. Never more than three
    # quarters of REAPER_INTERVAL; 0s: as fast as possible.
    reaper_spread: DurationOrZero = timedelta(seconds=45)
    # Keys deleted per second at most, across the batches in flight (0: no limit), whatever the spread asks.
    reaper_max_rate: int = Field(default=0, ge=0)
    reaper_consumer_group: str = "reaper"
    keys_timeout: Duration = timedelta(seconds=60)
    db_pool_size: int = Field(default=5, ge=1)

    # Secrets: no defaults. Its own token at the keys service (the keys service's `reaper` entry).
    keys_token: str = Field(min_length=16)

    secret_fields: ClassVar[tuple[str, ...]] = ("keys_token",)

    @property
    def spread(self) -> timedelta:
        """REAPER_SPREAD as the reaper paces by it: never more than three quarters of the interval."""
        return min(self.reaper_spread, self.reaper_interval * 3 / 4)
