-- The versioned change log the proxies sync from.
CREATE TABLE changes (
    version     BIGINT PRIMARY KEY,
    -- 'revoke'
    kind        TEXT NOT NULL,
    token_id    TEXT,
    -- When the entry stops mattering (the token's own expiry), ms.
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE INDEX changes_expires ON changes (expires_at);

-- One row. Every change-log insert bumps `version` in the same transaction; the row
-- lock serializes writers, so versions commit in order. `pruned_through` is the highest
-- version the sweeper deleted: a proxy behind it gets a snapshot.
CREATE TABLE sync_state (
    id              BIGINT PRIMARY KEY CHECK (id = 1),
    version         BIGINT NOT NULL,
    pruned_through  BIGINT NOT NULL
);

INSERT INTO sync_state (id, version, pruned_through) VALUES (1, 0, 0);

-- The proxies that have called the sync endpoint, and the version they asked from.
CREATE TABLE proxies (
    id             TEXT PRIMARY KEY,
    first_seen_at  BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    since_version  BIGINT NOT NULL
);
