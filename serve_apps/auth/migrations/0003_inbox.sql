-- Event ids the auth service's consumer group (`auth`, reading the users service's events) has applied, written in
-- the same transaction as the effect, so a redelivered event has no second effect.
CREATE TABLE inbox (
    consumer_group text        NOT NULL,
    event_id       uuid        NOT NULL,
    processed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, event_id)
);
