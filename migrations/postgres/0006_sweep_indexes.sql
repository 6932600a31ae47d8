-- The periodic sweeps delete by expiry (and spent refresh tokens by age): without these indexes
-- each sweep reads the whole table, once a minute.
CREATE INDEX refresh_families_expiry ON refresh_families (expires_at);
CREATE INDEX spent_refresh_tokens_expiry ON spent_refresh_tokens (expires_at);
CREATE INDEX spent_refresh_tokens_spent ON spent_refresh_tokens (spent_at);
CREATE INDEX invites_expiry ON invites (expires_at);
