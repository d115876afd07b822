"""The reaper's Prometheus metrics: keys reaped, the oldest expired key still present, its last success."""

from prometheus_client import Counter, Gauge, Histogram

KEYS_REAPED = Counter("keyward_reaper_keys_reaped_total", "Expired keys this process had the keys service delete")
BATCHES = Counter("keyward_reaper_batches_total", "Reap calls made to the keys service")
PASS_FAILURES = Counter("keyward_reaper_pass_failures_total", "Passes that failed (keys service or database)")
PASS_DURATION = Histogram(
    "keyward_reaper_pass_duration_seconds",
    "One pass: ask for the expiry status, reap every expired key, tidy the schedule",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
OLDEST_EXPIRED_AGE = Gauge(
    "keyward_reaper_oldest_expired_key_age_seconds",
    "How long ago the oldest expired key still present expired (0 when none); alert when above REAPER_INTERVAL",
)
EXPIRED_PRESENT = Gauge(
    "keyward_reaper_expired_keys", "Expired keys still present at the last look (counted up to 1,000,000)"
)
PACE = Gauge("keyward_reaper_pace_keys_per_second", "The pace of the pass under way (0: as fast as it can)")
LAST_SUCCESS = Gauge(
    "keyward_reaper_last_success_timestamp_seconds",
    "When a pass last finished: every key expired at its start was deleted",
)
NEXT_WAKE = Gauge("keyward_reaper_next_wake_timestamp_seconds", "When the reaper plans its next pass")
