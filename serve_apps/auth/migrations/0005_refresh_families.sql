-- One row per refresh-token family (session): the lock that orders its rotations and its revocations, and the
-- family-level revocation a rotation checks. A revocation locks the family row before it revokes the tokens, so a
-- rotation in flight finishes first and its child is revoked with the rest; a rotation after it sees revoked_at.
CREATE TABLE refresh_families (
    family_id  uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES accounts (user_id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);

CREATE INDEX refresh_families_user ON refresh_families (user_id);
CREATE INDEX refresh_families_expiry ON refresh_families (expires_at);

INSERT INTO refresh_families (family_id, user_id, created_at, expires_at, revoked_at)
SELECT family_id, min(user_id::text)::uuid, min(created_at), max(expires_at), max(revoked_at)
FROM refresh_tokens GROUP BY family_id;

ALTER TABLE refresh_tokens
    ADD CONSTRAINT refresh_tokens_family FOREIGN KEY (family_id) REFERENCES refresh_families (family_id) ON DELETE CASCADE;

-- A token's child is found by its parent (the grace window of a retried refresh looks it up).
CREATE INDEX refresh_tokens_parent ON refresh_tokens (parent_hash) WHERE parent_hash IS NOT NULL;
