-- no-transaction
-- Replaced by users_feed_idx (0011); dropped without blocking the table (see 0012).
DROP INDEX CONCURRENTLY IF EXISTS users_tokens_not_before_idx;
