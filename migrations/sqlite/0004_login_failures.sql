-- Failed-password counters shared by every instance (ratelimit.backend = "database").
-- Keys: "user:<lower-cased login>" and "ip:<address>". One row per key, one-minute
-- windows; rows are purged when neither their window nor their block matters.

CREATE TABLE login_failures (
    key           TEXT PRIMARY KEY NOT NULL,
    window_start  INTEGER NOT NULL,
    failures      INTEGER NOT NULL,
    blocked_until INTEGER NOT NULL,
    strikes       INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL
);
CREATE INDEX login_failures_last_seen ON login_failures (last_seen);
