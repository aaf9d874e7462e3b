-- The admin console's sessions (/console). A console login is an ordinary API token (its
-- value lives only in the browser's HttpOnly cookie; the token row holds its id); this row
-- marks the token as a console session and records its last console request, so a
-- session idle past TOKENGATE_SESSION_IDLE_SECS is revoked (by the next console request
-- or the sweeper) like any idle seed-003 session.
CREATE TABLE console_sessions (
    token_id      TEXT PRIMARY KEY REFERENCES tokens (id),
    user_id       TEXT NOT NULL REFERENCES users (id),
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL
);

CREATE INDEX console_sessions_last_seen ON console_sessions (last_seen_at);
