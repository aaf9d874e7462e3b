-- The credential throttle (control-plane/src/throttle.rs) replaces the per-name
-- login_throttle: streaks per source and per (source, account), and the failures of each
-- account over the last 24 hours (the NIST backstop, a sliding window). Keys hold a
-- kind, a source address and an account name as given (known or not).
CREATE TABLE throttle (
    key           TEXT PRIMARY KEY,
    -- Consecutive failures (reserved attempts count until settled).
    failures      BIGINT NOT NULL,
    -- No attempt before this (the progressive delay), ms; also the last failure's time.
    next_at       BIGINT NOT NULL,
    locked_until  BIGINT NOT NULL,
    -- The length of the last lock; the next one within a day doubles it.
    lock_ms       BIGINT NOT NULL
);

CREATE TABLE throttle_failures (
    id   TEXT PRIMARY KEY,
    key  TEXT NOT NULL,
    at   BIGINT NOT NULL
);

CREATE INDEX throttle_failures_key ON throttle_failures (key, at);
CREATE INDEX throttle_failures_at ON throttle_failures (at);

DROP TABLE login_throttle;
