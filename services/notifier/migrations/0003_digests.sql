-- Digests (issue 21): an administrator who would get more than NOTICE_DIGEST_MIN expiry notices falling due
-- within NOTICE_DIGEST_WINDOW gets one e-mail listing them all. A digest is formed when its notices are
-- recorded, before any of them is worked; its sender works it as one unit, and the ledger still holds one
-- delivery per (key, threshold, recipient): a digest's deliveries carry its id, are claimed and marked
-- together for a recipient, and are never sent as single e-mails.
CREATE TABLE notifier.digests (
    digest_id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done')),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- When a sender should look at it next; also a lease while one works it (as for a notice).
    next_check_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX digests_due ON notifier.digests (next_check_at) WHERE status = 'open';

ALTER TABLE notifier.notices ADD COLUMN digest_id uuid REFERENCES notifier.digests (digest_id);
ALTER TABLE notifier.deliveries ADD COLUMN digest_id uuid REFERENCES notifier.digests (digest_id);
CREATE INDEX notices_digest ON notifier.notices (digest_id) WHERE digest_id IS NOT NULL;
-- The notices a new digest may take: open, in no digest yet, by tenant and when they fell due.
CREATE INDEX notices_undigested ON notifier.notices (tenant_id, announced_at)
    WHERE status = 'open' AND digest_id IS NULL;
CREATE INDEX deliveries_digest ON notifier.deliveries (digest_id, recipient) WHERE digest_id IS NOT NULL;
