-- The login throttle counts failures only (invariant 11). Attempts still being checked are
-- counted apart, in `pending`: a key lets at most its remaining allowance be in flight at once
-- (one, once the allowance is used up), and further attempts wait for them instead of failing.
-- `pending_until` is the lease of those attempts: a process that died mid-check leaves a count
-- that is forgotten once the lease ends. Adding columns with a constant default rewrites
-- nothing and holds the table's lock only for the catalogue change.
ALTER TABLE login_throttle
    ADD COLUMN pending BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN pending_until BIGINT NOT NULL DEFAULT 0;   -- ms since the epoch
