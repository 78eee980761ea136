-- Tokens sent by email (invariant 7): a password reset, an address's verification, an
-- invitation. Stored only as the SHA-256 of
-- the token, single-use, bound to the user, the purpose and the user's cut-off when issued
-- (`fence`: a password change, disable or cut-off since then kills it). Issuing one deletes
-- the user's unused tokens of the same purpose.
CREATE TABLE account_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,                       -- 'password_reset' | 'email_verify' | 'invite'
    email_key  TEXT,                                -- the address a verification was sent to
    fence      BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX account_tokens_user ON account_tokens (user_id, purpose);
CREATE INDEX account_tokens_expiry ON account_tokens (expires_at);

-- The durable outbox (invariant 10): a message is written in the same transaction as the
-- token it carries, and a worker sends it. Its body may hold a link with a token, so it is
-- sealed under the master key (bound to "mail:<id>"). A claim (claimed_until) keeps replicas
-- from sending one message at once; a failed attempt waits next_attempt_at; after
-- mail.max_attempts it is dead.
CREATE TABLE mail_outbox (
    id              BLOB PRIMARY KEY,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body_sealed     BLOB NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT,
    sent_at         BIGINT,
    dead_at         BIGINT,
    last_error      TEXT
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at)
    WHERE sent_at IS NULL AND dead_at IS NULL;
