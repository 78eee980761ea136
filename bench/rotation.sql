-- pgbench script: the statement of one Tessera refresh, run directly against Postgres: the
-- atomic rotation (UPDATE ... RETURNING, with the user's roles and claims). bench/run seeds
-- 10,000 sessions with ids 00000000-0000-7000-8000-000000000001 ... for this script.
\set n random(1, 10000)
UPDATE sessions
SET generation = generation + 1,
    last_refreshed_at = LEAST(GREATEST(1795000000000,
        CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS BIGINT)), 1795000010000),
    idle_expires_at = CASE WHEN 1795604800000 < absolute_expires_at
                           THEN 1795604800000 ELSE absolute_expires_at END
WHERE id = ('00000000-0000-7000-8000-' || lpad(:n::text, 12, '0'))::uuid
  AND generation >= 0 AND revoked_at IS NULL AND idle_expires_at > 1795000000000
  AND absolute_expires_at > 1795000000000 AND client_id = 'tessera'
  AND EXISTS (SELECT 1 FROM users u WHERE u.id = sessions.user_id AND NOT u.disabled)
RETURNING *,
  (SELECT u.roles FROM users u WHERE u.id = sessions.user_id) AS user_roles,
  (SELECT u.claims FROM users u WHERE u.id = sessions.user_id) AS user_claims;
