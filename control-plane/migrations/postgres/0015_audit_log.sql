-- The audit log (issue 13 §5): one row per change an operator may be asked about, written
-- in the transaction that makes the change. Never a secret: no token value, password,
-- PIN or voucher code. `account_id` is NULL for a failed login under a name no account
-- has. `id` orders the entries: writers insert last before committing, holding an advisory
-- lock to the commit, so ids become visible in order (a tail by `after=` skips none).
CREATE TABLE audit_log (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             BIGINT NOT NULL,
    account_id     TEXT,
    kind           TEXT NOT NULL,
    actor_user     TEXT,
    actor_user_id  TEXT,
    actor_token_id TEXT,
    target         TEXT,
    address        TEXT,
    detail         TEXT NOT NULL
);
CREATE INDEX audit_log_account ON audit_log (account_id, id);
-- The time filters and the retention sweep (TOKENGATE_AUDIT_KEEP_DAYS).
CREATE INDEX audit_log_at ON audit_log (at);
