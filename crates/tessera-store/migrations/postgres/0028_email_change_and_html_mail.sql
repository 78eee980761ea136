-- An address change (POST /me/email) mails a token to the new address; the token carries
-- that address until it is confirmed. A message may have an HTML part besides its text,
-- sealed like the text (bound to "mail-html:<id>").
ALTER TABLE account_tokens ADD COLUMN email TEXT;
ALTER TABLE mail_outbox ADD COLUMN html_sealed BYTEA;

-- Requests that send mail, counted per client address in fixed windows (accounts.ip_requests
-- per accounts.ip_window), in the database so that every replica sees one count.
CREATE TABLE request_limits (
    key        TEXT PRIMARY KEY,
    count      BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
