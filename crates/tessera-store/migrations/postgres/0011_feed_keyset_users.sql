-- no-transaction
-- The feed's keyset index on users (see 0008), built without blocking writes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_feed_idx ON users (tokens_not_before, id);
