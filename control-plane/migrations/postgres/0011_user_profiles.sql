-- Users as seed 003 describes them: flags (`fl`), custom properties (`prp`, a JSON object
-- of strings), an optional PIN (argon2id PHC string), the last login, and deletion. A
-- deleted user keeps its row (its tokens' rows refer to it), renamed so the name is free.
ALTER TABLE users ADD COLUMN fl BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN prp TEXT NOT NULL DEFAULT '{}';
ALTER TABLE users ADD COLUMN pin_hash TEXT;
ALTER TABLE users ADD COLUMN last_login_at BIGINT;
ALTER TABLE users ADD COLUMN deleted_at BIGINT;

CREATE INDEX users_parent ON users (parent_id);
