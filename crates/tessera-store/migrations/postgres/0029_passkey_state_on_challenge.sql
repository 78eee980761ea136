-- The server half of a passkey second step (webauthn-rs's state, JSON, with its challenge)
-- lives on the login's mfa_challenges row, until its own expiry, rather than in a
-- webauthn_ceremonies row of its own: the options call updates the row the login already
-- has, and the assertion spends it as it reads it (its expiry set to 0; invariant 7).
ALTER TABLE mfa_challenges ADD COLUMN passkey_state TEXT;
ALTER TABLE mfa_challenges ADD COLUMN passkey_expires_at BIGINT;
