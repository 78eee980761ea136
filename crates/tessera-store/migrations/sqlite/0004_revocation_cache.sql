-- "Which users changed since T", for the revocation state's polled resync.
CREATE INDEX users_updated_at_idx ON users (updated_at);
