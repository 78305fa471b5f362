-- Event ids a component's consumer groups have applied (every component with consumer groups has one, in its own
-- schema: the runner sets the search_path to it), written in the same transaction as the effect, so a redelivered
-- event has no second effect.
-- IF NOT EXISTS: databases migrated before this definition was shared have the same table from their own migrations
-- (auth 0003_inbox, users 0002_profiles, data 0003_collections, audit 0001_audit_log, kept in
-- tests/fixtures/migrations_0/); the four copies were identical, so this is all of them.
CREATE TABLE IF NOT EXISTS inbox (
    consumer_group text        NOT NULL,
    event_id       uuid        NOT NULL,
    processed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, event_id)
);
