-- no-transaction
-- The feed's keyset index on sessions (see 0008), built without blocking writes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS sessions_feed_idx ON sessions (revoked_at, id);
