-- no-transaction
-- One account per address (0025's email_key), built without locking users against writes.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_key ON users (email_key);
