-- Second factors (invariant 7). A TOTP factor's secret is sealed under the master key (AES-GCM,
-- bound to "totp:<id>"), like a signing key, and re-sealed by `keys rekey`. It counts only
-- once confirmed with a valid code. `last_used_step` is the last RFC 6238 time step
-- accepted: a code is taken only for a later step, in one conditional UPDATE, so a code works
-- once even under parallel requests (RFC 6238 §5.2).
CREATE TABLE mfa_factors (
    id             UUID PRIMARY KEY,
    user_id        UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind           TEXT NOT NULL,                   -- 'totp'
    name           TEXT NOT NULL,
    secret_enc     BYTEA NOT NULL,
    confirmed_at   BIGINT,
    last_used_step BIGINT NOT NULL DEFAULT -1,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT
);
CREATE INDEX mfa_factors_user ON mfa_factors (user_id);

-- Single-use recovery codes, stored only as SHA-256 of the user id and the code.
CREATE TABLE recovery_codes (
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- A password login waiting for its second factor: the mfa_token (stored as its SHA-256),
-- bound to the user, the client, the grant asked for and the cut-off read with the password.
CREATE TABLE mfa_challenges (
    token_hash TEXT PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    scope      TEXT,
    resource   TEXT,
    fence      BIGINT NOT NULL,                     -- users.tokens_not_before at the password check
    failures   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX mfa_challenges_expiry ON mfa_challenges (expires_at);

-- The authentication methods of a session's login (RFC 8176, space-separated); NULL: "pwd".
-- A refresh keeps them.
ALTER TABLE sessions ADD COLUMN amr TEXT;
