-- The notifier owns the schema "notifier": the notices it must send, the delivery ledger, and what it
-- learned from the lifecycle events (events already handled, keys deleted).
CREATE SCHEMA IF NOT EXISTS notifier;

-- Events whose effects are committed; a redelivery of one of them (same ce_id) is dropped.
CREATE TABLE notifier.processed_events (
    event_id text PRIMARY KEY,
    event_type text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX processed_events_at ON notifier.processed_events (processed_at);

-- Tombstones: a key deleted gets no more e-mails, whatever arrives or is pending.
CREATE TABLE notifier.deleted_keys (
    key_id uuid PRIMARY KEY,
    reason text NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now()
);

-- One row per (key, threshold) announced: the work the sender fans out to the tenant's administrators.
CREATE TABLE notifier.notices (
    key_id uuid NOT NULL,
    threshold_seconds bigint NOT NULL CHECK (threshold_seconds > 0),
    event_id text NOT NULL,
    tenant_id uuid NOT NULL,
    organization_id uuid NOT NULL,
    key_name text NOT NULL,
    key_display text NOT NULL,
    created_by text NOT NULL,
    key_created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    announced_at timestamptz NOT NULL,
    -- Organization names from the tenant down to the key's organization, resolved once per notice.
    organization_path text[],
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done', 'cancelled')),
    status_reason text,
    received_at timestamptz NOT NULL DEFAULT now(),
    -- When a sender should look at it next; also a lease while one works it.
    next_check_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, threshold_seconds)
);
CREATE INDEX notices_due ON notifier.notices (next_check_at) WHERE status = 'open';

-- The delivery ledger: one row per (key, threshold, recipient), claimed before sending, marked after the
-- SMTP server accepted. `message_id` is derived from the three, so a copy sent twice is recognisable.
CREATE TABLE notifier.deliveries (
    key_id uuid NOT NULL,
    threshold_seconds bigint NOT NULL,
    recipient text NOT NULL,
    email text NOT NULL,
    display_name text NOT NULL,
    message_id text NOT NULL UNIQUE,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'cancelled')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_at timestamptz,
    claimed_by text,
    sent_at timestamptz,
    smtp_response text,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, threshold_seconds, recipient),
    FOREIGN KEY (key_id, threshold_seconds) REFERENCES notifier.notices (key_id, threshold_seconds),
    CHECK ((status = 'sending') = (claimed_at IS NOT NULL))
);
-- A recipient's notices for one key go out in threshold order.
CREATE INDEX deliveries_recipient ON notifier.deliveries (key_id, recipient, threshold_seconds);
CREATE INDEX deliveries_open ON notifier.deliveries (status) WHERE status IN ('pending', 'sending');
