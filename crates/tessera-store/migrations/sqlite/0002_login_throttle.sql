-- Brute-force limits, shared by every replica.
--
-- One row per throttled key: `u:<normalised username>` (whether or not that account exists, so
-- throttling reveals nothing about existence) and `ip:<address>`. `failures` counts failed logins
-- since `window_start`; past the free allowance each further failure pushes `locked_until` out
-- exponentially. A successful login deletes the username's row.
CREATE TABLE login_throttle (
    key          TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    window_start INTEGER NOT NULL,   -- ms since the epoch
    locked_until INTEGER NOT NULL    -- ms since the epoch; 0 when not locked
);
