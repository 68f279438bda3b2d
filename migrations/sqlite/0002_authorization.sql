-- Browser sessions, pending authorization requests, codes, consents and revocations. Opaque values (session cookie, request id, code) are stored only as SHA-256.

CREATE TABLE browser_sessions (
    id_hash    BLOB PRIMARY KEY NOT NULL,
    sid        TEXT NOT NULL UNIQUE,                   -- the `sid` claim (OIDC Front/Back-Channel Logout)
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_time  INTEGER NOT NULL,
    amr        TEXT NOT NULL,                          -- space-separated
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ended_at   INTEGER
);
CREATE INDEX browser_sessions_user ON browser_sessions (user_id);
CREATE INDEX browser_sessions_expiry ON browser_sessions (expires_at);

CREATE TABLE authorization_requests (
    id_hash      BLOB PRIMARY KEY NOT NULL,
    client_id    TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    request      TEXT NOT NULL,                        -- the validated request, JSON
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    completed_at INTEGER
);
CREATE INDEX authorization_requests_expiry ON authorization_requests (expires_at);

CREATE TABLE authorization_codes (
    code_hash        BLOB PRIMARY KEY NOT NULL,
    client_id        TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    grant_data       TEXT NOT NULL,                    -- redirect_uri, scope, nonce, PKCE, claims, sid… JSON
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    used_at          INTEGER,
    grant_id         TEXT                              -- the grant its first use created, revoked on replay
);
CREATE INDEX authorization_codes_expiry ON authorization_codes (expires_at);

CREATE TABLE consents (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,                          -- sorted, space-separated
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id, scope)
);

-- Revoked token ids (an access token's `jti`) and grant ids (a code exchange and the
-- refresh-token family it starts; access tokens carry it as `gid`). Kept until what they
-- revoke would have expired anyway.
CREATE TABLE revocations (
    id         TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER NOT NULL
);
CREATE INDEX revocations_expiry ON revocations (expires_at);
