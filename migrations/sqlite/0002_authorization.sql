-- Browser sessions, pending authorization requests, codes, consents and revoked access
-- tokens. Opaque values (session cookie, request id, code) are stored only as SHA-256.

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

CREATE TABLE authorization_requests (
    id_hash      BLOB PRIMARY KEY NOT NULL,
    client_id    TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    request      TEXT NOT NULL,                        -- the validated request, JSON
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    completed_at INTEGER
);

CREATE TABLE authorization_codes (
    code_hash        BLOB PRIMARY KEY NOT NULL,
    client_id        TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    grant_data       TEXT NOT NULL,                    -- redirect_uri, scope, nonce, PKCE, claims, sid… JSON
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    used_at          INTEGER,
    access_token_jti TEXT                              -- what the first use issued, revoked on replay
);

CREATE TABLE consents (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,                          -- sorted, space-separated
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id, scope)
);

CREATE TABLE revoked_access_tokens (
    jti        TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL,                       -- kept until the token would have expired
    revoked_at INTEGER NOT NULL
);
