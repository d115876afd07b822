-- How many keys each organization holds, kept by statement-level triggers, so the list's total at any
-- point of the tree is a sum over the subtree's organizations instead of a count over its keys.
CREATE TABLE keys.organization_key_counts (
    organization_id uuid PRIMARY KEY REFERENCES keys.organizations (id),
    keys bigint NOT NULL DEFAULT 0 CHECK (keys >= 0)
);
INSERT INTO keys.organization_key_counts (organization_id, keys)
SELECT organization_id, count(*) FROM keys.api_keys GROUP BY organization_id;

CREATE FUNCTION keys.count_keys_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Counter rows locked in one order, so concurrent statements never deadlock on them.
    INSERT INTO keys.organization_key_counts AS c (organization_id, keys)
    SELECT organization_id, count(*) FROM inserted GROUP BY organization_id ORDER BY organization_id
    ON CONFLICT (organization_id) DO UPDATE SET keys = c.keys + EXCLUDED.keys;
    RETURN NULL;
END $$;

CREATE FUNCTION keys.count_keys_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM keys.organization_key_counts
    WHERE organization_id IN (SELECT organization_id FROM deleted)
    ORDER BY organization_id FOR UPDATE;
    UPDATE keys.organization_key_counts c SET keys = c.keys - d.n
    FROM (SELECT organization_id, count(*) AS n FROM deleted GROUP BY organization_id) d
    WHERE c.organization_id = d.organization_id;
    RETURN NULL;
END $$;

CREATE TRIGGER api_keys_count_inserted AFTER INSERT ON keys.api_keys
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION keys.count_keys_inserted();
CREATE TRIGGER api_keys_count_deleted AFTER DELETE ON keys.api_keys
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION keys.count_keys_deleted();
