-- What a session was granted, kept so that every refresh issues the same (RFC 6749 §6):
-- `scope`, the space-separated scope granted at login (RFC 6749 §3.3; NULL: none asked for),
-- and `resource`, the RFC 8707 resource indicator its access tokens are for (their `aud`;
-- NULL: the default audience, `tokens.audience`).
ALTER TABLE sessions ADD COLUMN scope TEXT;
ALTER TABLE sessions ADD COLUMN resource TEXT;
