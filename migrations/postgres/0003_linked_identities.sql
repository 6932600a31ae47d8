-- Identities at sign-in providers (OIDC subject, GitHub id, Steam id) linked to users.

CREATE TABLE linked_identities (
    provider  TEXT NOT NULL,
    subject   TEXT NOT NULL,
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email     TEXT,
    linked_at BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE UNIQUE INDEX linked_identities_user_provider ON linked_identities (user_id, provider);
