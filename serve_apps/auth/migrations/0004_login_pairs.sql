-- Failed logins also count per (account, client) pair, the only scope that is ever locked; the account and client
-- scopes only back off, with a cap (docs/identity.md). A pair's subject is '<client key> <email>'.
ALTER TABLE login_failures
    DROP CONSTRAINT login_failures_scope_check,
    ADD CONSTRAINT login_failures_scope_check CHECK (scope IN ('account', 'client', 'pair'));

-- Locks the old policy put on whole accounts and addresses end now: under this one they only back off.
UPDATE login_failures SET locked_until = NULL WHERE scope <> 'pair' AND locked_until IS NOT NULL;
