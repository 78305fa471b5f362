-- Administrators read every collection of the data service (`data:admin`: read only; they write what they own or
-- edit, like anyone).
INSERT INTO role_permissions (role, permission) VALUES ('admin', 'data:admin');
