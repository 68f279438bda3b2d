-- Failed-password counters shared by every instance (ratelimit.backend = "database").
-- Keys: "user:<lower-cased login>" and "ip:<address>". One row per key, one-minute
-- windows; rows are purged when neither their window nor their block matters.

CREATE TABLE login_failures (
    key           TEXT PRIMARY KEY NOT NULL,
    window_start  BIGINT NOT NULL,
    failures      BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL,
    strikes       BIGINT NOT NULL,
    last_seen     BIGINT NOT NULL
);
CREATE INDEX login_failures_last_seen ON login_failures (last_seen);
