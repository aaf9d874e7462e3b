-- Seed 001 token management: an update amends a token's rights without changing the
-- string the client holds. The row holds the current (amended) values; `expires_at` is
-- the effective end, which an amendment may bring forward but never past the expiry
-- signed into the JWT.
ALTER TABLE tokens ADD COLUMN signed_expires_at BIGINT;
-- Seed 001 `dur` as last set (seconds, 0 = no end); NULL for tokens issued otherwise.
ALTER TABLE tokens ADD COLUMN dur BIGINT;
-- When the token was last amended (ms); NULL: its claims are as signed.
ALTER TABLE tokens ADD COLUMN amended_at BIGINT;

UPDATE tokens SET signed_expires_at = expires_at WHERE signed_expires_at IS NULL;

CREATE INDEX tokens_user ON tokens (user_id);
