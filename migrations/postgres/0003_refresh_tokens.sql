-- Refresh tokens (RFC 6749 §6), rotated on every use. A family is every token descended
-- from one code exchange or password grant; its id is the grant id that access tokens
-- carry as `gid`, so revoking the family (one row in `revocations`) revokes them too.

CREATE TABLE refresh_tokens (
    token_hash        BYTEA PRIMARY KEY NOT NULL,      -- SHA-256 of the token
    family_id         TEXT NOT NULL,
    client_id         TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    grant_data        TEXT NOT NULL,                 -- scopes, auth_time, sid, claims request (JSON)
    session_sid       TEXT,                          -- the browser session it lives with; NULL with offline_access
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,               -- idle expiry of this token
    family_expires_at BIGINT NOT NULL,               -- absolute expiry of the family
    used_at           BIGINT,
    successor_sealed  BYTEA,                           -- the replacement, encrypted under a key derived from this token
    revoked_at        BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_sid);
