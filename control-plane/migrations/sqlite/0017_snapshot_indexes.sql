-- Issue 14: a snapshot of 1M live revocations. Its parts walk the revoked tokens in id
-- order (`id > after ORDER BY id LIMIT page`): this partial index holds exactly those
-- rows with every column the query reads, so a part is read from the index alone instead
-- of one table lookup per row. The first part also lists the amended tokens, which
-- without an index is a scan of the whole table (seconds at 1M tokens).
CREATE INDEX tokens_revoked_by_id ON tokens (id, signed_expires_at, expires_at, revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX tokens_amended ON tokens (id) WHERE amended_at IS NOT NULL;
