-- The keys service owns the schema "keys": the organization directory, the keys, their audit and outbox.
CREATE EXTENSION IF NOT EXISTS ltree;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE SCHEMA IF NOT EXISTS keys;

-- A tree of any depth: system -> tenant -> organization -> sub-organization.
-- `path` is the chain of ids (dashes dropped, ltree labels allow none) from the root down to this node,
-- so "this organization and everything below it" is `path <@ $1`, served by the GiST index.
CREATE TABLE keys.organizations (
    id uuid PRIMARY KEY,
    parent_id uuid REFERENCES keys.organizations (id),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    path ltree NOT NULL UNIQUE,
    -- The tenant above (or at) this node; null only for the system root.
    tenant_id uuid REFERENCES keys.organizations (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((parent_id IS NULL) = (nlevel(path) = 1))
);
CREATE INDEX organizations_path_gist ON keys.organizations USING gist (path);
CREATE UNIQUE INDEX organizations_sibling_name ON keys.organizations (coalesce(parent_id, '00000000-0000-0000-0000-000000000000'::uuid), lower(name));
CREATE INDEX organizations_tenant ON keys.organizations (tenant_id);

CREATE TABLE keys.administrators (
    id uuid PRIMARY KEY,
    username text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9._@-]{1,64}$'),
    email text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    display_name text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 100),
    level text NOT NULL CHECK (level IN ('system', 'tenant')),
    role text NOT NULL DEFAULT 'customer_administrator'
        CHECK (role IN ('customer_administrator', 'administrator')),
    organization_id uuid NOT NULL REFERENCES keys.organizations (id),
    -- Denormalised from the organization so "the customer administrators of tenant T" is one index scan.
    tenant_id uuid REFERENCES keys.organizations (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX administrators_tenant ON keys.administrators (tenant_id, level, role);

CREATE TABLE keys.api_keys (
    id uuid PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    organization_id uuid NOT NULL REFERENCES keys.organizations (id),
    -- Denormalised for the list: filtered by subtree, searched and sorted by organization name.
    organization_path ltree NOT NULL,
    organization_name text NOT NULL,
    tenant_id uuid,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    last_used_at timestamptz,
    key_display text NOT NULL,
    -- HMAC-SHA256 of the key under the secret `digest_key_id`; the plain key is never stored.
    digest bytea NOT NULL UNIQUE,
    digest_key_id text NOT NULL,
    -- AES-256-GCM: nonce || ciphertext+tag, under the ring key `enc_key_id`, the row id as associated data.
    ciphertext bytea NOT NULL,
    enc_key_id text NOT NULL,
    -- The most imminent expiry notice threshold already announced (seconds); null when none yet.
    noticed_threshold_seconds bigint,
    CHECK (expires_at > created_at)
);
CREATE UNIQUE INDEX api_keys_name_per_org ON keys.api_keys (organization_id, lower(name));
CREATE INDEX api_keys_path_gist ON keys.api_keys USING gist (organization_path);
CREATE INDEX api_keys_expires ON keys.api_keys (expires_at, id);
CREATE INDEX api_keys_name_sort ON keys.api_keys (lower(name), id);
CREATE INDEX api_keys_org_sort ON keys.api_keys (lower(organization_name), id);
CREATE INDEX api_keys_created_by_sort ON keys.api_keys (lower(created_by), id);
CREATE INDEX api_keys_created_sort ON keys.api_keys (created_at, id);
CREATE INDEX api_keys_display_sort ON keys.api_keys (key_display, id);
CREATE INDEX api_keys_enc_key ON keys.api_keys (enc_key_id);
-- Partial, case-insensitive search over every visible column: a derived text, trigram-indexed.
ALTER TABLE keys.api_keys ADD COLUMN search_text text NOT NULL DEFAULT '';
CREATE FUNCTION keys.api_keys_search_text() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_text := lower(NEW.name || ' ' || NEW.organization_name || ' ' || NEW.created_by || ' '
        || NEW.key_display || ' ' || to_char(NEW.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'));
    RETURN NEW;
END $$;
CREATE TRIGGER api_keys_search_text BEFORE INSERT OR UPDATE OF name, organization_name ON keys.api_keys
    FOR EACH ROW EXECUTE FUNCTION keys.api_keys_search_text();
CREATE INDEX api_keys_search_trgm ON keys.api_keys USING gin (search_text gin_trgm_ops);

-- What happened, by whom. Outlives the keys: a deleted key's name, organization and times stay here.
CREATE TABLE keys.audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL CHECK (action IN ('create', 'rename', 'delete', 'reveal', 'export', 'reencrypt')),
    key_id uuid,
    key_name text,
    organization_id uuid,
    details jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_key ON keys.audit_log (key_id, at);
CREATE INDEX audit_log_at ON keys.audit_log (at);

-- Transactional outbox: a change and its event commit together; the relay publishes and marks them sent.
CREATE TABLE keys.outbox (
    id bigserial PRIMARY KEY,
    topic text NOT NULL,
    message_key bytea NOT NULL,
    headers jsonb NOT NULL,
    payload bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at timestamptz
);
CREATE INDEX outbox_unsent ON keys.outbox (id) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_at ON keys.outbox (sent_at) WHERE sent_at IS NOT NULL;

CREATE FUNCTION keys.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('keys_outbox', '');
    RETURN NULL;
END $$;
-- One notification per statement, delivered at commit (PostgreSQL folds duplicates within a transaction).
CREATE TRIGGER outbox_notify AFTER INSERT ON keys.outbox FOR EACH STATEMENT EXECUTE FUNCTION keys.notify_outbox();
