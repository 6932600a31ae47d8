-- The revocation log of several replicas on PostgreSQL; a SQLite deployment is one replica and
-- never writes it. Kept so that both engines' schemas have the same versions.
CREATE TABLE revocation_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    revocation TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX revocation_log_created ON revocation_log (created_at);
