-- Credentials, sessions, signing keys and brute-force counters of the auth service (docs: serve_apps/auth).

-- One row per account. The email is the login name, stored trimmed and lower-cased, so uniqueness ignores case.
-- roles and perm_version go into every access token (claims `roles`, `pv`); a null password_hash cannot log in.
CREATE TABLE accounts (
    user_id             uuid        PRIMARY KEY,
    email               text        NOT NULL UNIQUE CHECK (email = lower(btrim(email)) AND email <> ''),
    password_hash       text,
    roles               text[]      NOT NULL DEFAULT '{member}',
    perm_version        integer     NOT NULL DEFAULT 1 CHECK (perm_version >= 1),
    disabled            boolean     NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now()
);

-- Refresh tokens are opaque random strings; only their SHA-256 is kept. Every login starts a family (a session,
-- the `sid` claim); every refresh marks the presented token used and adds its child to the family. Presenting a
-- used token again means it leaked: the whole family is revoked.
CREATE TABLE refresh_tokens (
    token_hash  bytea       PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    family_id   uuid        NOT NULL,
    user_id     uuid        NOT NULL REFERENCES accounts (user_id) ON DELETE CASCADE,
    parent_hash bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

-- Keys that sign access tokens. private_key is the PKCS#8 key encrypted with AES-256-GCM under a key derived
-- from the master secret (version byte, nonce, ciphertext); public_jwk is what the JWKS publishes. One key is
-- active (retired_at null); the most recently retired one stays in the JWKS so its tokens verify until they expire.
CREATE TABLE signing_keys (
    kid          text        PRIMARY KEY,
    alg          text        NOT NULL CHECK (alg IN ('EdDSA', 'RS256')),
    private_key  bytea       NOT NULL,
    public_jwk   jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz
);

CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((true)) WHERE retired_at IS NULL;
CREATE INDEX signing_keys_retired ON signing_keys (retired_at DESC) WHERE retired_at IS NOT NULL;

-- Failed logins per account (the email, known or not) and per client address: exponential backoff after a few,
-- a temporary lock after many. A row whose last failure left the window no longer counts.
CREATE TABLE login_failures (
    scope            text        NOT NULL CHECK (scope IN ('account', 'client')),
    subject          text        NOT NULL,
    failures         integer     NOT NULL DEFAULT 0 CHECK (failures >= 0),
    first_failure_at timestamptz NOT NULL DEFAULT now(),
    last_failure_at  timestamptz NOT NULL DEFAULT now(),
    locked_until     timestamptz,
    PRIMARY KEY (scope, subject)
);

CREATE INDEX login_failures_last ON login_failures (last_failure_at);
