-- Data items: a document (JSON body) of some kind, owned by one identity, versioned on every change.
CREATE TABLE items (
    id         uuid        PRIMARY KEY,
    owner_id   text        NOT NULL,
    kind       text        NOT NULL,
    body       jsonb       NOT NULL,
    version    integer     NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX items_owner ON items (owner_id, created_at DESC);
