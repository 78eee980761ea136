-- no-transaction
-- The paginated revocation feed reads "entries after (time, key)", in that order. Indexes on
-- the time alone made each page sort every entry sharing its millisecond: a mass revocation
-- ("revoke every session" writes one revoked_at for all of them) cost a full sort per page.
-- With the key in the index a page is an index range scan at any size. The `jti` is compared
-- in the "C" collation, the bytewise order the application merges in. Rows here are never
-- updated after revocation, so the wider indexes cost no HOT update.
--
-- Built CONCURRENTLY, outside a transaction, one statement per migration (Postgres refuses
-- CONCURRENTLY in a transaction block, and sqlx sends a migration as one query): a plain
-- CREATE INDEX holds a SHARE lock on the table, which stops every write to `sessions` for the
-- 1-2 s the build takes at 1M rows, during a rolling deploy. 0010-0014 are the rest of this
-- change. IF NOT EXISTS: databases that ran this migration in its earlier, transactional
-- form have the index already (Tessera updates the recorded checksum; see store/upkeep.rs),
-- and an index left invalid by an interrupted build is dropped before migrations run.
CREATE INDEX CONCURRENTLY IF NOT EXISTS revoked_tokens_feed_idx
    ON revoked_tokens (revoked_at, jti COLLATE "C");
