-- The paginated revocation feed reads "entries after (time, key)", in that order: indexes on
-- (time, key) make a page an index range scan even when many entries share a millisecond (see
-- the Postgres migration of the same number).
CREATE INDEX revoked_tokens_feed_idx ON revoked_tokens (revoked_at, jti);
CREATE INDEX sessions_feed_idx ON sessions (revoked_at, id);
CREATE INDEX users_feed_idx ON users (tokens_not_before, id);
DROP INDEX revoked_tokens_revoked_at_idx;
DROP INDEX sessions_revoked_at_idx;
DROP INDEX users_tokens_not_before_idx;
