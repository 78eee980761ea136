-- The login throttle counts failures only (invariant 11). Attempts still being checked are
-- rows here instead, one per attempt and key, each with its own lease: a key lets at most the
-- allowance it has left be in flight at once (one, once the allowance is used up), and further
-- attempts wait for them instead of failing. A process that dies mid-check leaves rows that
-- stop counting when their lease ends (a request timeout and a second), whatever other
-- attempts do meanwhile; the upkeep loop deletes them. A new, empty table: nothing is locked.
CREATE TABLE login_attempts (
    key         TEXT NOT NULL,
    id          UUID NOT NULL,
    lease_until BIGINT NOT NULL,   -- ms since the epoch
    PRIMARY KEY (key, id)
);
CREATE INDEX login_attempts_lease_until_idx ON login_attempts (lease_until);
