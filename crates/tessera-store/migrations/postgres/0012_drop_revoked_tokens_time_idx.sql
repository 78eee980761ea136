-- no-transaction
-- Replaced by revoked_tokens_feed_idx (0008). Dropped CONCURRENTLY: a plain DROP INDEX waits
-- for an ACCESS EXCLUSIVE lock, and every query on the table queues behind it.
DROP INDEX CONCURRENTLY IF EXISTS revoked_tokens_revoked_at_idx;
