-- Key lifecycle, client binding and the revocation feed.

-- An automatic rotation names the key it succeeds. The unique index lets exactly one replica
-- win the race to rotate a given key; manual rotations and imports leave it NULL.
ALTER TABLE signing_keys ADD COLUMN succeeds TEXT;
CREATE UNIQUE INDEX signing_keys_succeeds_key ON signing_keys (succeeds);

-- The OAuth client a session was issued to (RFC 6749 §6: a refresh token is bound to its client).
ALTER TABLE sessions ADD COLUMN client_id TEXT NOT NULL DEFAULT 'tessera';

-- The revocation feed reads "what changed since T".
CREATE INDEX revoked_tokens_revoked_at_idx ON revoked_tokens (revoked_at);
CREATE INDEX sessions_revoked_at_idx ON sessions (revoked_at);
CREATE INDEX users_tokens_not_before_idx ON users (tokens_not_before);
