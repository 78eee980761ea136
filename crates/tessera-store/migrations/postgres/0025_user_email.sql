-- Users' email addresses (optional). `email` is the address as the user gave it; `email_key`
-- is what is compared: the local part and the domain in lower case, the domain IDNA-normalised
-- (its ASCII form), so that one mailbox cannot hold two accounts however it is written. A
-- user logs in with their username or this address. 0026 makes email_key unique.
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE users ADD COLUMN email_key TEXT;
ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE;
