-- The notifier service connects at run time as a login role that is a member of keyward_notifier_app (the local
-- stack's is keyward_notifier; in production the DBA's, see docs/operations.md). That role may read and write
-- the notifier schema's rows, and nothing else: not another service's schema, not the migrations' bookkeeping,
-- no DDL. Tables that later migrations create here get the same grants (default privileges of the owner).
DO $$ BEGIN
    CREATE ROLE keyward_notifier_app NOLOGIN;
EXCEPTION
    WHEN duplicate_object THEN NULL;
    WHEN insufficient_privilege THEN RAISE NOTICE 'the migration role may not create roles: keyward_notifier_app must exist';
END $$;
GRANT USAGE ON SCHEMA notifier TO keyward_notifier_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA notifier TO keyward_notifier_app;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA notifier TO keyward_notifier_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA notifier GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO keyward_notifier_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA notifier GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO keyward_notifier_app;
