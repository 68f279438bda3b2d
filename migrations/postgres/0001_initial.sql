-- Users, clients and signing-key metadata. Times are Unix seconds (BIGINT).

CREATE TABLE users (
    id             TEXT PRIMARY KEY NOT NULL,          -- the stable opaque `sub`
    username       TEXT NOT NULL,
    email          TEXT NOT NULL,                      -- normalised (trimmed, lower-case)
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    password_hash  TEXT,                               -- argon2id PHC string; NULL: no password set
    name           TEXT,
    given_name     TEXT,
    family_name    TEXT,
    picture        TEXT,
    locale         TEXT,
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE user_roles (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role    TEXT NOT NULL,
    PRIMARY KEY (user_id, role)
);

CREATE TABLE clients (
    id                         TEXT PRIMARY KEY NOT NULL,
    name                       TEXT,
    secret_hash                BYTEA,                  -- SHA-256 of the secret; NULL for public clients
    token_endpoint_auth_method TEXT NOT NULL,
    grant_types                TEXT NOT NULL,          -- space-separated
    scopes                     TEXT NOT NULL DEFAULT '', -- space-separated extra scopes
    first_party                BOOLEAN NOT NULL DEFAULT FALSE,
    introspect_any             BOOLEAN NOT NULL DEFAULT FALSE,
    source                     TEXT NOT NULL,          -- 'config' or 'cli'/'api'
    created_at                 BIGINT NOT NULL,
    updated_at                 BIGINT NOT NULL
);

CREATE TABLE client_redirect_uris (
    client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    kind      TEXT NOT NULL CHECK (kind IN ('login', 'post_logout')),
    uri       TEXT NOT NULL,
    position  BIGINT NOT NULL,
    PRIMARY KEY (client_id, kind, uri)
);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY NOT NULL,            -- RFC 7638 thumbprint
    alg          TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    activated_at BIGINT NOT NULL,                     -- the newest non-retired key signs
    retired_at   BIGINT
);
