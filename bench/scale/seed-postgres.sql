-- Seeds a migrated Tessera database on Postgres at a chosen size, for capacity planning and for
-- bench/scale. Run with psql against a database `tessera migrate` has prepared:
--
--   psql "$DATABASE_URL" -v users=1000000 -v sessions=1000000 -v revoked=100000 \
--        -v expired=0 -v audit=0 -v phc="$PHC" -f bench/scale/seed-postgres.sql
--
-- - users: N users `s0000001` …, all with the one argon2id PHC string `phc` (so seeding hashes
--   nothing; every seeded user's password is whatever `phc` hashes);
-- - sessions: M live sessions spread over the users, ids
--   00000000-0000-7000-8000-<12-digit n> (bench/rotation.sql refreshes those);
-- - revoked: R denylisted jtis (UUIDs, as Tessera's own) and R/10 revoked sessions, inside
--   the token horizon;
-- - expired: E sessions already past their absolute expiry and the purge's retention (what one
--   upkeep purge then deletes);
-- - audit: A audit events, if the table exists.
-- Times are the database's clock, in milliseconds. Rows are written in one transaction each.
\set ON_ERROR_STOP on
SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now \gset

INSERT INTO users (id, username, password_hash, roles, claims, disabled, tokens_not_before,
                   created_at, updated_at)
SELECT md5('user' || n)::uuid, 's' || lpad(n::text, 7, '0'), :'phc', '[]', '{}', false, 0,
       :now, :now
FROM generate_series(1, :users) n;

INSERT INTO sessions (id, user_id, generation, created_at, last_refreshed_at, idle_expires_at,
                      absolute_expires_at, client_id)
SELECT ('00000000-0000-7000-8000-' || lpad(n::text, 12, '0'))::uuid,
       md5('user' || (1 + n % :users))::uuid, 0, :now, :now,
       :now + 14 * 86400000::bigint, :now + 30 * 86400000::bigint, 'tessera'
FROM generate_series(1, :sessions) n;

INSERT INTO sessions (id, user_id, generation, created_at, last_refreshed_at, idle_expires_at,
                      absolute_expires_at, client_id)
SELECT ('00000000-0000-7000-9000-' || lpad(n::text, 12, '0'))::uuid,
       md5('user' || (1 + n % :users))::uuid, 0, :now - 40 * 86400000::bigint,
       :now - 40 * 86400000::bigint, :now - 26 * 86400000::bigint,
       :now - 10 * 86400000::bigint, 'tessera'
FROM generate_series(1, :expired) n;

-- Revoked sessions: live rows with revoked_at inside the last minutes (the token horizon).
INSERT INTO sessions (id, user_id, generation, created_at, last_refreshed_at, idle_expires_at,
                      absolute_expires_at, client_id, revoked_at, revoked_reason)
SELECT ('00000000-0000-7000-a000-' || lpad(n::text, 12, '0'))::uuid,
       md5('user' || (1 + n % :users))::uuid, 0, :now, :now,
       :now + 14 * 86400000::bigint, :now + 30 * 86400000::bigint, 'tessera',
       :now - (n % 300000), 'seeded'
FROM generate_series(1, :revoked / 10) n;

INSERT INTO revoked_tokens (jti, user_id, session_id, expires_at, revoked_at, reason)
SELECT md5('jti' || n)::uuid::text, md5('user' || (1 + n % :users))::uuid, NULL,
       :now + 600000 - (n % 300000), :now - (n % 300000), 'seeded'
FROM generate_series(1, :revoked) n;

SELECT :audit > 0 AND to_regclass('audit_events') IS NOT NULL AS seed_audit \gset
\if :seed_audit
INSERT INTO audit_events (id, at, event, user_id, ip, reason)
SELECT md5('audit' || n)::uuid, :now - n * 1000, 'login.succeeded',
       md5('user' || (1 + n % :users))::uuid, '127.0.0.1', NULL
FROM generate_series(1, :audit) n;
\endif

-- Vacuumed and analysed, as a database in service would be: autovacuum catching up on a
-- freshly seeded table would otherwise compete with the measurements.
VACUUM ANALYZE;
