-- One account per address (0025's email_key).
CREATE UNIQUE INDEX users_email_key ON users (email_key);
