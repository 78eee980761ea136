-- The login throttle counts failures only (invariant 11). Attempts still being checked are
-- counted apart, in `pending`: a key lets at most its remaining allowance be in flight at once
-- (one, once the allowance is used up), and further attempts wait for them instead of failing.
-- `pending_until` is the lease of those attempts: a process that died mid-check leaves a count
-- that is forgotten once the lease ends.
ALTER TABLE login_throttle ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
ALTER TABLE login_throttle ADD COLUMN pending_until INTEGER NOT NULL DEFAULT 0;   -- ms since the epoch
