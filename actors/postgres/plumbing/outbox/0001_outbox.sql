-- The transactional outbox (docs/events.md) of every component whose spec has `outbox=True`, in its own schema
-- (the runner sets the search_path to it). An event is inserted here in the same transaction as the change it
-- describes; the component's relay actors publish it to Kafka and mark it sent; sent rows are pruned. key_hash shards
-- rows between relays, so all events of one key go through one relay, in seq order.
-- IF NOT EXISTS: databases migrated before this definition was shared have the same table from their own
-- 0001_outbox.sql (kept in tests/fixtures/migrations_0/), with the same columns, constraints and indexes.
CREATE TABLE IF NOT EXISTS outbox (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         uuid        NOT NULL UNIQUE,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    key_hash   bigint      NOT NULL,
    payload    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);

CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (key_hash, seq) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
