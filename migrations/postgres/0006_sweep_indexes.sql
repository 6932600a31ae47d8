-- The periodic sweeps delete by expiry (and spent refresh tokens by age): without these indexes
-- each sweep reads the whole table, once a minute.
--
-- Built in the migration's transaction, which blocks writes to these tables while it runs: on a
-- large deployment, create them beforehand with CREATE INDEX CONCURRENTLY under these names and
-- this migration does nothing. (Concurrently here would wait for the replicas that wait for the
-- migration lock: a deadlock.)
CREATE INDEX IF NOT EXISTS refresh_families_expiry ON refresh_families (expires_at);
CREATE INDEX IF NOT EXISTS spent_refresh_tokens_expiry ON spent_refresh_tokens (expires_at);
CREATE INDEX IF NOT EXISTS spent_refresh_tokens_spent ON spent_refresh_tokens (spent_at);
CREATE INDEX IF NOT EXISTS invites_expiry ON invites (expires_at);
