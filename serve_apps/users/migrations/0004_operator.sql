-- Operators read /readyz's details (components, addresses, errors) with the permission `ops:read`: admins have it,
-- and the `operator` role grants it alone, for monitoring that must not administer users.
INSERT INTO roles (name, description) VALUES
    ('operator', 'Reads operational details (the gateway''s /readyz report), nothing else.');

INSERT INTO role_permissions (role, permission) VALUES
    ('admin', 'ops:read'), ('operator', 'ops:read');
