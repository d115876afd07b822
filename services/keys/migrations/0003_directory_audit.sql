-- The audit covers the directory: creating an organization or an administrator is written with its actor.
ALTER TABLE keys.audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE keys.audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN (
    'create', 'rename', 'delete', 'reveal', 'export', 'reencrypt', 'create_organization', 'create_administrator'
));
