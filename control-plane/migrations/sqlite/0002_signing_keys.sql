-- Ed25519 signing keys. A retired key stays published while tokens it signed can live.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    -- The 32-byte private seed, standard base64.
    seed        TEXT NOT NULL,
    -- The public key, base64url without padding (JWK `x`).
    x           TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);
