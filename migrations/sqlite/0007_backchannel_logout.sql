-- OpenID Connect Back-Channel Logout 1.0: where a client wants to hear about logouts,
-- which clients took part in each session, and the deliveries still to make (an outbox
-- written in the same transaction that ends a session, so a restart loses nothing).

ALTER TABLE clients ADD COLUMN backchannel_logout_uri TEXT;

CREATE TABLE session_clients (
    sid        TEXT NOT NULL,
    client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (sid, client_id)
);

-- One row per (session, client); the logout token is signed at each attempt, so a late
-- retry still carries a fresh iat/exp.
CREATE TABLE logout_deliveries (
    id              TEXT PRIMARY KEY NOT NULL,             -- "<sid> <client_id>"
    client_id       TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    uri             TEXT NOT NULL,
    sub             TEXT NOT NULL,
    sid             TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    last_error      TEXT
);
CREATE INDEX logout_deliveries_due ON logout_deliveries (next_attempt_at);
