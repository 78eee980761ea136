-- Passkeys (WebAuthn) as second factors and for passwordless login. A passkey is an
-- mfa_factors row of kind 'passkey': `credential` is the credential webauthn-rs checks
-- assertions against (its public key, sign counter and backup flags; no secret), and
-- `secret_enc` is empty. A credential id belongs to one account only.
ALTER TABLE mfa_factors ADD COLUMN credential_id TEXT;            -- base64url
ALTER TABLE mfa_factors ADD COLUMN credential TEXT;               -- JSON
ALTER TABLE mfa_factors ADD COLUMN sign_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE mfa_factors ADD COLUMN backup_eligible BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE mfa_factors ADD COLUMN backup_state BOOLEAN NOT NULL DEFAULT FALSE;
CREATE UNIQUE INDEX mfa_factors_credential ON mfa_factors (credential_id);

-- The server half of a WebAuthn ceremony between its two calls (the challenge it issued),
-- under the digest of an opaque id (for a second factor, the login's mfa_token). Taken once,
-- by DELETE ... RETURNING: webauthn-rs's states are not single-use themselves. A passwordless
-- ceremony's state is sealed into its id instead (anyone may start one); a 'spent' row marks
-- one used, until it expires.
CREATE TABLE webauthn_ceremonies (
    id_hash    TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL,                       -- 'register' | 'second_factor' | 'spent'
    user_id    UUID REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT,                                -- the new passkey's name ('register')
    state      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX webauthn_ceremonies_expiry ON webauthn_ceremonies (expires_at);
