-- X-Acting-Admin claims already used: a claim is accepted once (its jti), for as long as it could be valid.
-- Unlogged: a row is written on every administrator's call, and a crash of PostgreSQL (which empties the table)
-- reopens a replay only for claims captured in the minute before it.
CREATE UNLOGGED TABLE keys.acting_claims (
    jti text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX acting_claims_expiry ON keys.acting_claims (expires_at);
