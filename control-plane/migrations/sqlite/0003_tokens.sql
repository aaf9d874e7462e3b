-- One row per issued token, keyed by its `jti`. Never the token value: the JWT is
-- self-contained and cannot be retrieved again.
CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    user_id       TEXT NOT NULL REFERENCES users (id),
    parent_id     TEXT REFERENCES tokens (id),
    name          TEXT,
    -- JSON array of canonical scope patterns; NULL = all the user's powers.
    scopes        TEXT,
    fl            BIGINT,
    -- JSON array of item ids; NULL = all items.
    items         TEXT,
    app           TEXT,
    p             TEXT,
    issued_at     BIGINT NOT NULL,
    not_before    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    last_used_at  BIGINT
);

CREATE INDEX tokens_account ON tokens (account_id, id);
CREATE INDEX tokens_parent ON tokens (parent_id);
CREATE INDEX tokens_revoked ON tokens (expires_at) WHERE revoked_at IS NOT NULL;
