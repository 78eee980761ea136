-- Tessera core schema (SQLite).
--
-- Every timestamp is BIGINT milliseconds since the Unix epoch (UTC). The SQLite schema uses the
-- same representation, so both stores share one set of queries and compare times as integers.
-- UUIDs are 16-byte BLOBs and JSON is TEXT.

-- Accounts. `username` is stored already normalised (NFKC, trimmed, lower-cased) by the
-- application, so the UNIQUE constraint enforces uniqueness after normalisation.
CREATE TABLE users (
    id                BLOB PRIMARY KEY,            -- UUIDv7, time-ordered
    username          TEXT NOT NULL UNIQUE,
    password_hash     TEXT NOT NULL,               -- argon2id PHC string, never a password
    roles             TEXT NOT NULL DEFAULT '[]', -- JSON array of role names
    claims            TEXT NOT NULL DEFAULT '{}', -- custom claims copied into access tokens
    disabled          INTEGER NOT NULL DEFAULT 0,
    -- Access tokens issued before this instant are refused (set by password change,
    -- "revoke all sessions"); 0 means no such cut-off.
    tokens_not_before BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

-- One row per refresh-token family. Refresh tokens themselves are never stored: a token is
-- HMAC(secret, id || generation), so only the current `generation` needs to be kept.
CREATE TABLE sessions (
    id                  BLOB PRIMARY KEY,
    user_id             BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    generation          BIGINT NOT NULL DEFAULT 0,  -- bumped by exactly one per rotation
    created_at          BIGINT NOT NULL,
    last_refreshed_at   BIGINT NOT NULL,            -- time of the latest rotation (grace window)
    idle_expires_at     BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    revoked_at          BIGINT,
    revoked_reason      TEXT,
    user_agent          TEXT,
    ip                  TEXT
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_absolute_expires_at_idx ON sessions (absolute_expires_at);

-- The access-token denylist. A row is useless once the token it names has expired, so the
-- purge task deletes rows whose `expires_at` has passed.
CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    user_id    BLOB NOT NULL,
    session_id BLOB,
    expires_at BIGINT NOT NULL,   -- the token's own `exp`, in milliseconds
    revoked_at BIGINT NOT NULL,
    reason     TEXT NOT NULL
);
CREATE INDEX revoked_tokens_expires_at_idx ON revoked_tokens (expires_at);

-- Signing keys. The private key is PKCS#8 DER sealed with AES-256-GCM under the master key
-- (12-byte nonce || ciphertext || tag, with the kid as associated data).
CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY,
    alg             TEXT NOT NULL,       -- ES256, EdDSA or RS256
    private_key_enc BLOB NOT NULL,
    public_jwk      TEXT NOT NULL,       -- the public JWK exactly as published
    created_at      BIGINT NOT NULL,
    publish_at      BIGINT NOT NULL,     -- appears in the JWKS from here on
    activate_at     BIGINT NOT NULL,     -- may sign from here on
    retire_at       BIGINT,              -- stops signing here
    remove_at       BIGINT               -- leaves the JWKS here
);
