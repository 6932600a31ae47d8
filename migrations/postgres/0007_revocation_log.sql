-- Revocations as a log every replica reads from its own position (NOTIFY only rings the bell),
-- so that one missed while a replica's listener was reconnecting is read when it is back,
-- instead of the replica emptying its cache. Rows are kept an hour.
CREATE TABLE revocation_log (
    id         BIGSERIAL PRIMARY KEY,
    revocation TEXT NOT NULL,
    -- Milliseconds on the database's clock (replicas' clocks may differ).
    created_at BIGINT NOT NULL
);
CREATE INDEX revocation_log_created ON revocation_log (created_at);
