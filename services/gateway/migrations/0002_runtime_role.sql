-- The gateway connects at run time as a login role that is a member of keyward_gateway_app (the local stack's
-- is keyward_gateway; in production the DBA's, see docs/operations.md). That role may read and write the
-- gateway schema's rows (the console's sessions), and nothing else.
DO $$ BEGIN
    CREATE ROLE keyward_gateway_app NOLOGIN;
EXCEPTION
    WHEN duplicate_object THEN NULL;
    WHEN insufficient_privilege THEN RAISE NOTICE 'the migration role may not create roles: keyward_gateway_app must exist';
END $$;
GRANT USAGE ON SCHEMA gateway TO keyward_gateway_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA gateway TO keyward_gateway_app;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA gateway TO keyward_gateway_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA gateway GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO keyward_gateway_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA gateway GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO keyward_gateway_app;
