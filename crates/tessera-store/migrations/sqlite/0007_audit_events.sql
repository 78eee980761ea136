-- The audit trail: one row per security event (login, refresh, logout, account and key
-- changes, failed client authentication). Never a secret: no password, token, hash or key.
-- `id` is a UUIDv7, so ordering by it is ordering by time (the admin listing's cursor).
-- Rows older than `audit.retention` are purged by the upkeep loop.
CREATE TABLE audit_events (
    id          BLOB PRIMARY KEY,
    at          BIGINT NOT NULL,   -- milliseconds since the Unix epoch
    event       TEXT NOT NULL,     -- e.g. login.failed, token.refreshed
    user_id     BLOB,
    session_id  BLOB,
    client_id   TEXT,
    ip          TEXT,              -- the client address (see http.trusted_proxies)
    request_id  TEXT,
    reason      TEXT,              -- a reason code, e.g. bad_password, unknown_user
    actor_id    BLOB                -- the administrator who acted, for admin API actions
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_user ON audit_events (user_id, id);
