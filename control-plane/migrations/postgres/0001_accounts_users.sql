-- Accounts (contracts) and their users. Times are ms since the epoch.
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL REFERENCES accounts (id),
    parent_id      TEXT REFERENCES users (id),
    name           TEXT NOT NULL UNIQUE,
    -- PHC string, argon2id.
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    created_at     BIGINT NOT NULL
);

CREATE INDEX users_account ON users (account_id);
