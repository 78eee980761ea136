-- no-transaction
-- Replaced by sessions_feed_idx (0010); dropped without blocking the table (see 0012).
DROP INDEX CONCURRENTLY IF EXISTS sessions_revoked_at_idx;
