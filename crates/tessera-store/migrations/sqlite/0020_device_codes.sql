-- The device authorization grant (RFC 8628): a device code (stored as its digest) and the
-- user code a person types on the hosted page. Pending until the user allows or denies it,
-- then used once by the device's poll (invariant 7).
CREATE TABLE device_codes (
    device_code_hash TEXT PRIMARY KEY,
    user_code        TEXT NOT NULL UNIQUE,        -- 8 letters of the 20-letter alphabet, no dash
    client_id        TEXT NOT NULL,
    scope            TEXT,
    resource         TEXT,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    interval_ms      BIGINT NOT NULL,             -- grows by 5 s at each slow_down
    last_polled_at   BIGINT NOT NULL DEFAULT 0,
    status           TEXT NOT NULL DEFAULT 'pending', -- pending, approved, denied, used
    user_id          BLOB,
    sso_session_id   BLOB,
    auth_time        BIGINT,
    amr              TEXT,
    session_id       BLOB                           -- the refresh session the poll created
);
CREATE INDEX device_codes_expiry ON device_codes (expires_at);
