-- How fast a session and an account may refresh: a token bucket each (tokens as of refilled_at), spent by a rotation
-- while it holds the family's row lock. The family's bucket is on its row; the account's has a table of its own, locked
-- after the family, so a rotation never locks the account row (revocations lock account, then family).
-- NULL tokens: a bucket never spent, which is full.
ALTER TABLE refresh_families
    ADD COLUMN refresh_tokens_left double precision,
    ADD COLUMN refresh_refilled_at timestamptz;

CREATE TABLE refresh_account_rates (
    user_id     uuid             PRIMARY KEY REFERENCES accounts (user_id) ON DELETE CASCADE,
    tokens_left double precision NOT NULL,
    refilled_at timestamptz      NOT NULL
);
