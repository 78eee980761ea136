-- no-transaction
-- Built CONCURRENTLY (see 0008): writes to `users` go on while it builds.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_username_skeleton_key
    ON users (username_skeleton);
