-- The OpenID Provider: SSO sessions of the hosted login and authorization codes.

-- A browser's login at the hosted pages (its cookie holds a 256-bit random token, stored only
-- as its SHA-256). Every app the browser goes to through /authorize shares it until it ends:
-- idle, absolute, revoked, or cut off with the user's tokens (users.tokens_not_before).
CREATE TABLE sso_sessions (
    id                  BLOB PRIMARY KEY,              -- the `sid` of ID and logout tokens
    user_id             BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash          TEXT NOT NULL UNIQUE,         -- base64url SHA-256 of the cookie's token
    auth_time           BIGINT NOT NULL,              -- ms; when the user authenticated
    amr                 TEXT NOT NULL,                -- space-separated RFC 8176 methods
    created_at          BIGINT NOT NULL,
    last_seen_at        BIGINT NOT NULL,
    idle_expires_at     BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    revoked_at          BIGINT,
    revoked_reason      TEXT,
    ip                  TEXT,
    user_agent          TEXT
);
CREATE INDEX sso_sessions_user ON sso_sessions (user_id);

-- Authorization codes (RFC 6749 §4.1.2): stored only as their SHA-256, single-use, short-lived,
-- bound to everything the request was granted for. `session_id` is the refresh session the
-- exchange created, revoked if the code is presented again (invariant 7).
CREATE TABLE authorization_codes (
    code_hash      TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,                     -- PKCE S256 (RFC 7636 §4.2)
    nonce          TEXT,
    scope          TEXT,
    resource       TEXT,
    sso_session_id BLOB NOT NULL REFERENCES sso_sessions (id) ON DELETE CASCADE,
    user_id        BLOB NOT NULL,
    auth_time      BIGINT NOT NULL,
    amr            TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT,
    session_id     BLOB,
    replayed_at    BIGINT
);
CREATE INDEX authorization_codes_expiry ON authorization_codes (expires_at);

-- The SSO session a refresh session was created through, if any.
ALTER TABLE sessions ADD COLUMN sso_session_id BLOB;
