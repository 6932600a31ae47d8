-- The token a spent refresh token was exchanged for, sealed under a key only the holder of the
-- spent token can derive: a client that raced itself across replicas gets the same successor
-- instead of a refusal, and the database alone cannot read it.
ALTER TABLE spent_refresh_tokens ADD COLUMN successor TEXT;
