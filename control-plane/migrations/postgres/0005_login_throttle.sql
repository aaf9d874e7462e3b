-- Failed password attempts per user name (known or not, so the table reveals nothing).
CREATE TABLE login_throttle (
    username      TEXT PRIMARY KEY,
    failures      BIGINT NOT NULL,
    window_start  BIGINT NOT NULL,
    locked_until  BIGINT NOT NULL,
    -- The length of the last lock; the next one doubles it.
    lock_ms       BIGINT NOT NULL
);
