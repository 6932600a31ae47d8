-- API keys, JWT signing keys and refresh-token families.
-- Secrets clients hold are stored as SHA-256 hex; times are milliseconds since the Unix epoch.

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    expires_at   BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_keys_user ON api_keys (user_id);

-- Keys that sign access tokens and assertions. The newest unretired key signs; every key is
-- published in the JWKS until nothing it signed can still be valid.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL,
    private_key TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);

-- One row per signed-in token client (its `sid`); the refresh token rotates on every use.
CREATE TABLE refresh_families (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    scopes     TEXT,
    client     TEXT,
    ip         TEXT,
    created_at BIGINT NOT NULL,
    rotated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX refresh_families_user ON refresh_families (user_id);

-- Refresh tokens already exchanged: presenting one again is reuse, and revokes its family.
CREATE TABLE spent_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    spent_at   BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
