"""The keys service's Prometheus metrics: keys created and deleted, verify outcomes, the relay and the watcher."""

from prometheus_client import Counter, Gauge, Histogram

KEYS_CREATED = Counter("keyward_keys_created_total", "API keys created")
KEYS_DELETED = Counter("keyward_keys_deleted_total", "API keys deleted", ["reason"])
VERIFY_OUTCOMES = Counter("keyward_verify_total", "Key verifications by outcome", ["outcome"])
VERIFY_LOOKUP_BATCH = Histogram(
    "keyward_verify_lookup_batch_size",
    "Verify requests answered by one statement (VERIFY_BATCH_MAX at most; 1 when verify is quiet)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),
)
KEYS_STORED = Gauge(
    "keyward_keys_stored", "API keys in the database (an expired key counts until the reaper deletes it)"
)
OUTBOX_BACKLOG = Gauge("keyward_outbox_backlog", "Outbox events not yet acknowledged by Kafka")
OUTBOX_OLDEST_AGE = Gauge("keyward_outbox_oldest_unsent_age_seconds", "Age of the oldest unsent outbox event")
RELAY_PUBLISHED = Counter("keyward_relay_published_total", "Events the relay published to Kafka")
RELAY_FAILURES = Counter("keyward_relay_failures_total", "Relay attempts that failed (Kafka or database)")
RELAY_LAG = Histogram(
    "keyward_relay_lag_seconds",
    "From the outbox commit to Kafka's acknowledgement",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RELAY_LEADER = Gauge("keyward_relay_leader", "1 while this replica holds the relay lock")
EXPIRING_ANNOUNCED = Counter("keyward_expiring_announced_total", "Expiring events written", ["threshold"])
WATCHER_LAST_RUN = Gauge(
    "keyward_expiry_watcher_last_success_timestamp_seconds", "When the watcher last finished a pass"
)
