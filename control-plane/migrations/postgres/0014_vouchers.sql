-- Seed 000: Wi-Fi networks and identification vouchers.
--
-- A network belongs to an account; its id is what a proxy lists in `audiences` and what a
-- voucher's access token carries as `aud`.
CREATE TABLE networks (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX networks_account ON networks (account_id, id);

-- A voucher's code is never stored in the clear: `code_mac` is HMAC-SHA256 under the
-- lookup key and `code_sealed` the code under the seal key (XChaCha20-Poly1305, the id as
-- associated data), both keys in files of the data directory. `deleted_at`: deleted by
-- hand (the row stays while revocations of its activations must reach the proxies).
CREATE TABLE vouchers (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts (id),
    kind         TEXT NOT NULL CHECK (kind IN ('single', 'multi')),
    days         INTEGER,
    code_mac     TEXT NOT NULL UNIQUE,
    code_sealed  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT,
    revoked_at   BIGINT,
    deleted_at   BIGINT
);
CREATE INDEX vouchers_account ON vouchers (account_id, id);

-- One device's activation of a voucher on one network (seed 000's "copy" of a multi-use
-- voucher). Its id is the `jti` of every access token issued for it, so one revocation
-- refuses them all; `token_expires_at` is the latest of their ends, which that revocation
-- lives until. `ends_at` NULL: unlimited.
CREATE TABLE voucher_activations (
    id                TEXT PRIMARY KEY,
    voucher_id        TEXT NOT NULL REFERENCES vouchers (id),
    account_id        TEXT NOT NULL REFERENCES accounts (id),
    device            TEXT NOT NULL,
    network_id        TEXT NOT NULL,
    activated_at      BIGINT NOT NULL,
    ends_at           BIGINT,
    token_expires_at  BIGINT NOT NULL,
    kid               TEXT NOT NULL,
    revoked_at        BIGINT,
    revoke_reason     TEXT CHECK (revoke_reason IN ('revoked', 'deleted', 'other_network', 'network_deleted'))
);
-- A redemption reads one device's activations of one voucher.
CREATE INDEX voucher_activations_voucher ON voucher_activations (voucher_id, device);
CREATE INDEX voucher_activations_device ON voucher_activations (device) WHERE revoked_at IS NULL;
CREATE INDEX voucher_activations_revoked ON voucher_activations (token_expires_at) WHERE revoked_at IS NOT NULL;

-- Names the voucher keys the database's vouchers were made with (an HMAC of a label, not
-- the key): a start with other key files is refused instead of breaking every voucher.
CREATE TABLE voucher_keys (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    check_value  TEXT NOT NULL
);
