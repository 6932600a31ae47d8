-- Roles a sign-in provider gives (its roles_map applied to the IdP's groups), kept apart from
-- the roles an operator sets (user_roles), so that neither overwrites the other.
CREATE TABLE user_provider_roles (
    user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    role     TEXT NOT NULL,
    PRIMARY KEY (user_id, provider, role)
);
