from datetime import timedelta

from pydantic import Field

from shared.durations import Duration
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    port: int = 8083
    keys_url: str = "http://127.0.0.1:8081"
    # The longest an expired key may still exist: the reaper never sleeps longer than this.
    reaper_interval: Duration = timedelta(seconds=60)
    # Keys deleted per call to the keys service, each call one transaction there (its maximum is 5000).
    reaper_batch_size: int = Field(default=1000, ge=1, le=5000)
    # Batches in flight at once while a backlog lasts; SKIP LOCKED keeps them from colliding.
    reaper_concurrency: int = Field(default=2, ge=1, le=16)
    # Keys deleted per second at most, across the batches in flight (0: no limit). A mass expiry then costs
    # the keys service a bounded share of its CPU, and verify keeps its latency.
    reaper_max_rate: int = Field(default=0, ge=0)
    # The entry of SERVICE_TOKENS this process presents; the keys service must list it in REAPER_SERVICES.
    reaper_service_name: str = "reaper"
    reaper_consumer_group: str = "reaper"
    keys_timeout: Duration = timedelta(seconds=60)
    db_pool_size: int = 5

    # Secrets: no defaults.
    service_tokens: str

    secret_fields: tuple[str, ...] = ("service_tokens",)
