-- Single-use tokens mailed for e-mail verification and password reset. Only the SHA-256
-- of a token is stored; a token is deleted when it is used.

CREATE TABLE account_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    purpose    TEXT NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      TEXT NOT NULL,                          -- the address it was mailed to
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX account_tokens_user ON account_tokens (user_id);
CREATE INDEX account_tokens_expiry ON account_tokens (expires_at);
