-- The reaper owns the schema "reaper": when each key expires, as the lifecycle events told it.
-- Only a plan for waking up: the keys service stays the truth about which keys exist and have expired.
CREATE SCHEMA IF NOT EXISTS reaper;

CREATE TABLE reaper.schedule (
    key_id uuid PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedule_expires ON reaper.schedule (expires_at);
