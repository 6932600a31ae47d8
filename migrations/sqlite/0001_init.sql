-- Users, roles, settings and the ephemeral tables of the `database` backend.
-- Times are milliseconds since the Unix epoch; ids are UUID text.

CREATE TABLE users (
    id                TEXT PRIMARY KEY,
    email             TEXT NOT NULL UNIQUE,
    email_verified_at BIGINT,
    name              TEXT,
    username          TEXT UNIQUE,
    avatar_url        TEXT,
    locale            TEXT,
    password_hash     TEXT,
    disabled_at       BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE user_roles (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role    TEXT NOT NULL,
    PRIMARY KEY (user_id, role)
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE ephemeral_values (
    key        TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX ephemeral_values_expiry ON ephemeral_values (expires_at);

CREATE TABLE ephemeral_counters (
    key        TEXT PRIMARY KEY,
    count      BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX ephemeral_counters_expiry ON ephemeral_counters (expires_at);

CREATE TABLE ephemeral_sets (
    key        TEXT NOT NULL,
    member     TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (key, member)
);
CREATE INDEX ephemeral_sets_expiry ON ephemeral_sets (expires_at);
