-- `data:admin` lets its holders read every collection and its items (never write them): the data service reads it
-- from the caller the gateway builds (DataCaller.admin). Admins have it; no other seeded role does.
INSERT INTO role_permissions (role, permission) VALUES ('admin', 'data:admin');
