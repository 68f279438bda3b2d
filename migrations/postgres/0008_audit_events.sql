-- The audit trail: append-only (rows are only inserted, and deleted by the retention
-- purge). `detail` is a JSON object of non-secret facts; passwords, tokens and secrets
-- never reach it.

CREATE TABLE audit_events (
    id         BIGSERIAL PRIMARY KEY,
    time       BIGINT NOT NULL,         -- unix seconds
    type       TEXT NOT NULL,           -- e.g. login.failed, token.issued, admin.user.updated
    outcome    TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    actor      TEXT,                    -- who acted: a user's sub, "client:<id>" or "cli"
    subject    TEXT,                    -- whom it concerns: a user's sub, or "client:<id>", "key:<kid>"
    client_id  TEXT,
    ip         TEXT,
    user_agent TEXT,
    request_id TEXT,
    detail     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_subject ON audit_events (subject, id);
CREATE INDEX audit_events_type ON audit_events (type, id);
