-- The audit log: one row per domain event, whoever produced it. Written by the audit consumer group.
CREATE TABLE log (
    event_id    uuid        PRIMARY KEY,
    type        text        NOT NULL,
    source      text        NOT NULL,
    subject     text        NOT NULL,
    actor       text,
    request_id  text,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX log_by_time ON log (occurred_at DESC);
CREATE INDEX log_by_actor ON log (actor, occurred_at DESC);
CREATE INDEX log_by_type ON log (type, occurred_at DESC);
