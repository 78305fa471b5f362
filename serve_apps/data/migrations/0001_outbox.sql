-- The transactional outbox (docs/events.md): an event is inserted here in the same transaction as the
-- change it describes; the service's relay actors publish it to Kafka and mark it sent; sent rows are pruned.
-- key_hash shards rows between relays, so all events of one key go through one relay, in seq order.
CREATE TABLE outbox (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         uuid        NOT NULL UNIQUE,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    key_hash   bigint      NOT NULL,
    payload    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);

CREATE INDEX outbox_unsent ON outbox (key_hash, seq) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
