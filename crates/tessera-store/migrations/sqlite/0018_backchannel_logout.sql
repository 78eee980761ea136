-- Back-Channel Logout 1.0: one row per logout token to deliver to a client's
-- backchannel_logout_uri. Durable work (invariant 10): claimed under a lease by one replica at
-- a time, retried with backoff, dead after the last attempt; the token is signed at each
-- attempt, with the row's id as its jti.
CREATE TABLE backchannel_deliveries (
    id              BLOB PRIMARY KEY,
    client_id       TEXT NOT NULL,
    uri             TEXT NOT NULL,
    user_id         BLOB NOT NULL,                  -- the logout token's sub
    sso_session_id  BLOB NOT NULL,                  -- its sid
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    locked_until    BIGINT NOT NULL DEFAULT 0,    -- the lease of the replica delivering it
    delivered_at    BIGINT,
    failed_at       BIGINT,                       -- given up after the last attempt
    last_error      TEXT
);
CREATE INDEX backchannel_deliveries_due ON backchannel_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
