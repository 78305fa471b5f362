-- User administration: roles changed by an admin bump the profile's permissions version, which travels to the
-- auth service in `roles_changed` events (the `pv` claim of new tokens). Listing pages by (created_at, user_id).
ALTER TABLE profiles ADD COLUMN perm_version integer NOT NULL DEFAULT 1 CHECK (perm_version >= 1);

CREATE INDEX profiles_by_creation ON profiles (created_at, user_id);
