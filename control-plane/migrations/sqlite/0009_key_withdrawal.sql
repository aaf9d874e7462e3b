-- A key withdrawn by a rotation with `retireOldest=true`: never published (JWKS, sync)
-- nor trusted again, whatever tokens it signed; the same transaction revoked every live
-- one of them.
ALTER TABLE signing_keys ADD COLUMN withdrawn_at BIGINT;
