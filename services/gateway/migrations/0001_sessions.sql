-- The console's sessions, held on the server: the browser's cookie carries only a random id, and a row here
-- is what makes it worth anything. Sign-out deletes the row, so a copied cookie stops working at once.
-- Ids are stored as SHA-256 digests: reading this table does not let anyone act as a signed-in administrator.
CREATE SCHEMA IF NOT EXISTS gateway;

CREATE TABLE gateway.sessions (
    id_digest bytea PRIMARY KEY,
    username text NOT NULL,
    csrf_token text NOT NULL,
    -- The ID token the provider issued at sign-in (AUTH_MODE=oidc): the hint of the provider's sign-out.
    id_token text,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    -- When the administrator was last found in the directory.
    checked_at timestamptz NOT NULL DEFAULT now(),
    -- started_at + SESSION_MAX_AGE: the latest a session lives, whatever its use.
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expires_at ON gateway.sessions (expires_at);
CREATE INDEX sessions_username ON gateway.sessions (username);

-- A sign-in under way at the OpenID provider (AUTH_MODE=oidc): what the callback needs to check its answer.
-- Bound to the browser that started it by the digest of a random id in a short-lived cookie; used once.
CREATE TABLE gateway.sign_ins (
    id_digest bytea PRIMARY KEY,
    state text NOT NULL,
    nonce text NOT NULL,
    code_verifier text NOT NULL,
    redirect_uri text NOT NULL,
    next_path text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX sign_ins_expires_at ON gateway.sign_ins (expires_at);

-- The gateway connects at run time as a login role that is a member of keyward_gateway_app (the local stack's
-- is keyward_gateway; in production the DBA's, see docs/operations.md): the gateway schema's rows, nothing else.
DO $$ BEGIN
    CREATE ROLE keyward_gateway_app NOLOGIN;
EXCEPTION
    WHEN duplicate_object THEN NULL;
    WHEN insufficient_privilege THEN RAISE NOTICE 'the migration role may not create roles: keyward_gateway_app must exist';
END $$;
GRANT USAGE ON SCHEMA gateway TO keyward_gateway_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA gateway TO keyward_gateway_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA gateway GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO keyward_gateway_app;
