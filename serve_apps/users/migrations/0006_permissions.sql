-- The catalogue of permissions: one row per permission a component's spec defines (`permissions` in
-- schemas/_registry.py), seeded and kept up to date by `strata migrate` after every schema's migrations, so a new
-- component defines its permissions in its spec, not in a migration of this service. Roles and their grants stay
-- here (role_permissions): who holds a permission is this service's policy.
-- role_permissions has no foreign key to it: on a fresh database this service's migrations, grants included, run
-- before the registry's permissions are seeded, so a grant of a new permission in a later migration would fail there.
-- tests/unit/test_migration_upgrade.py checks that every shipped grant names a catalogued permission.
CREATE TABLE permissions (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$'),
    component   text NOT NULL,
    description text NOT NULL
);
