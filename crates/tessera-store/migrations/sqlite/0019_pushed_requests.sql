-- Pushed authorization requests (RFC 9126): the parameters a confidential client pushed, under
-- the digest of their request_uri, for one use at /authorize within a minute.
CREATE TABLE pushed_requests (
    uri_hash   TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    params     TEXT NOT NULL,                 -- JSON object of the authorization parameters
    expires_at BIGINT NOT NULL
);
CREATE INDEX pushed_requests_expiry ON pushed_requests (expires_at);
