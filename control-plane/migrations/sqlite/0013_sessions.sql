-- Seed 003 sessions (POST /token/login). The session token itself is never stored: the
-- row holds its id (the JWT's `jti`). A session acts as `user_id` (the token's user, or
-- the descendant named by `operateAs`), was made from the API token `token_id` (whose
-- rights it has, and with which it ends) by `operator_id` (the token's user).
-- `last_used_at` starts at `created_at` and moves with the proxies' usage reports; the
-- idle sweep ends a session whose `last_used_at` is older than the idle limit (plus the
-- report grace). An ended session keeps its row (`ended_at`, `end_reason`) for a day.
CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    user_id       TEXT NOT NULL REFERENCES users (id),
    operator_id   TEXT NOT NULL REFERENCES users (id),
    token_id      TEXT NOT NULL REFERENCES tokens (id),
    -- The key that signed the session: a retired key stays published while a live
    -- session it signed remains, as for tokens.
    kid           TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    last_used_at  BIGINT NOT NULL,
    ended_at      BIGINT,
    end_reason    TEXT CHECK (end_reason IN ('logout', 'idle', 'token_revoked', 'user_deleted', 'key_withdrawn'))
);

CREATE INDEX sessions_token ON sessions (token_id);
CREATE INDEX sessions_account ON sessions (account_id, id);
CREATE INDEX sessions_user ON sessions (user_id);
-- The idle sweep and the snapshot read live sessions only.
CREATE INDEX sessions_live_idle ON sessions (last_used_at) WHERE ended_at IS NULL;
