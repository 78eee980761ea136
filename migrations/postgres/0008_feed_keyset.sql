-- The paginated revocation feed reads "entries after (time, key)", in that order. Indexes on
-- the time alone made each page sort every entry sharing its millisecond: a mass revocation
-- ("revoke every session" writes one revoked_at for all of them) cost a full sort per page.
-- With the key in the index a page is an index range scan at any size. The `jti` is compared
-- in the "C" collation, the bytewise order the application merges in. Rows here are never
-- updated after revocation, so the wider indexes cost no HOT update.
CREATE INDEX revoked_tokens_feed_idx ON revoked_tokens (revoked_at, jti COLLATE "C");
CREATE INDEX sessions_feed_idx ON sessions (revoked_at, id);
CREATE INDEX users_feed_idx ON users (tokens_not_before, id);
DROP INDEX revoked_tokens_revoked_at_idx;
DROP INDEX sessions_revoked_at_idx;
DROP INDEX users_tokens_not_before_idx;
