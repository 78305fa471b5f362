-- Roles and what they may do: data, not code. Seeded with admin, member and viewer; the gateway reads this
-- mapping (cached) to check each route's permission at the edge.
CREATE TABLE roles (
    name        text PRIMARY KEY,
    description text NOT NULL
);

CREATE TABLE role_permissions (
    role       text NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    permission text NOT NULL,
    PRIMARY KEY (role, permission)
);

INSERT INTO roles (name, description) VALUES
    ('admin', 'Manages users and reads the audit log, besides everything a member does.'),
    ('member', 'Reads and writes their own profile and data.'),
    ('viewer', 'Reads their own profile and data.');

INSERT INTO role_permissions (role, permission) VALUES
    ('viewer', 'profile:read'), ('viewer', 'data:read'),
    ('member', 'profile:read'), ('member', 'profile:write'), ('member', 'data:read'), ('member', 'data:write'),
    ('admin', 'profile:read'), ('admin', 'profile:write'), ('admin', 'data:read'), ('admin', 'data:write'),
    ('admin', 'users:read'), ('admin', 'users:write'), ('admin', 'audit:read');

-- One profile per account, created from the auth service's `registered` event (or on the first read of a
-- token's subject when that event has not arrived yet: email stays empty until it does).
CREATE TABLE profiles (
    user_id      uuid PRIMARY KEY,
    email        text,
    display_name text,
    roles        text[]      NOT NULL DEFAULT '{member}',
    disabled     boolean     NOT NULL DEFAULT false,
    version      integer     NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
