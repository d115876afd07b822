-- Rolling a key (issue 21): the successor and its predecessor linked both ways, and when a key was first used.
-- No foreign keys: the links are history (a successor deleted leaves its predecessor "replaced"), and a reap of
-- a hundred thousand keys would otherwise check each one's links.
ALTER TABLE keys.api_keys
    ADD COLUMN replaces uuid,
    ADD COLUMN replaced_by uuid,
    -- The first verify that found the key (written with last_used_at, off the verify path).
    ADD COLUMN first_used_at timestamptz;

-- A name is unique in its organization among the keys not replaced, so that a successor carries its
-- predecessor's name through the overlap.
DROP INDEX keys.api_keys_name_per_org;
CREATE UNIQUE INDEX api_keys_name_per_org ON keys.api_keys (organization_id, lower(name)) WHERE replaced_by IS NULL;
-- A key has one successor, and a successor one predecessor.
CREATE UNIQUE INDEX api_keys_replaced_by ON keys.api_keys (replaced_by) WHERE replaced_by IS NOT NULL;
CREATE UNIQUE INDEX api_keys_replaces ON keys.api_keys (replaces) WHERE replaces IS NOT NULL;

-- A roll is audited on the key rolled, naming its successor and the end of the overlap.
ALTER TABLE keys.audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE keys.audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN (
    'create', 'rename', 'delete', 'reveal', 'export', 'reencrypt', 'create_organization', 'create_administrator',
    'roll'
));
