-- Collections, their members and their items (issue 11). The first data API (0002: a `kind` and a JSON `body` per
-- owner, reachable by handle only) is retired with no route ever having served it: its table goes, rows and all.
DROP TABLE items;

-- A collection belongs to one user (its owner) and is shared with members; `version` is its ETag.
CREATE TABLE collections (
    id          uuid        PRIMARY KEY,
    owner_id    uuid        NOT NULL,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    item_schema jsonb,
    version     integer     NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Listings page by (created_at, id): a caller's own, and everyone's for data:admin.
CREATE INDEX collections_by_owner ON collections (owner_id, created_at, id);
CREATE INDEX collections_by_creation ON collections (created_at, id);

-- Who a collection is shared with (the owner is never a member of their own collection).
CREATE TABLE members (
    collection_id uuid        NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    user_id       uuid        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('viewer', 'editor')),
    version       integer     NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection_id, user_id)
);

CREATE INDEX members_by_user ON members (user_id);
CREATE INDEX members_by_creation ON members (collection_id, created_at, user_id);

-- Items, hash-partitioned by collection: every query names one collection_id, so it scans one partition. The
-- partition count is the setting `data_item_partitions`, read once, here (docs/data.md: changing it later means
-- copying every item into a new table).
CREATE TABLE items (
    collection_id uuid        NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    id            uuid        NOT NULL,
    title         text        NOT NULL,
    attributes    jsonb       NOT NULL DEFAULT '{}',
    tags          text[]      NOT NULL DEFAULT '{}',
    version       integer     NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_by    uuid        NOT NULL,
    updated_by    uuid        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection_id, id)
) PARTITION BY HASH (collection_id);

CREATE INDEX items_by_creation ON items (collection_id, created_at, id);
CREATE INDEX items_by_update ON items (collection_id, updated_at, id);
CREATE INDEX items_tags ON items USING gin (tags);
CREATE INDEX items_attributes ON items USING gin (attributes jsonb_path_ops);

DO $$
DECLARE
    partitions integer := coalesce(nullif(current_setting('strata.data_item_partitions', true), ''), '8')::integer;
BEGIN
    IF partitions < 1 OR partitions > 256 THEN
        RAISE EXCEPTION 'data_item_partitions must lie in 1..256, not %', partitions;
    END IF;
    FOR remainder IN 0 .. partitions - 1 LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF items FOR VALUES WITH (MODULUS %s, REMAINDER %s)',
            'items_p' || remainder, partitions, remainder
        );
    END LOOP;
END
$$;

-- Idempotency-Key (IETF httpapi draft): a POST's first answer per (caller, operation, key), written in the same
-- transaction as its effect; `fingerprint` (SHA-256 of the request) tells a retry from a reuse. Expired rows count
-- as absent and are pruned by the replicas.
CREATE TABLE idempotency_keys (
    caller      uuid        NOT NULL,
    operation   text        NOT NULL,
    key         text        NOT NULL,
    fingerprint bytea       NOT NULL,
    status      integer     NOT NULL,
    response    bytea       NOT NULL,
    location    text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (caller, operation, key)
);

CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
