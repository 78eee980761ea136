-- A session row deleted by hand (not by the purge, which only removes rows expired or revoked
-- more than a day ago) ends its access tokens at once on every replica, as a revocation does.
CREATE FUNCTION tessera_notify_session_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tessera_changes', 'session:' || OLD.id::text || ':deleted');
    RETURN OLD;
END $$;

CREATE TRIGGER sessions_notify_deleted AFTER DELETE ON sessions
    FOR EACH ROW
    WHEN (OLD.revoked_at IS NULL
          AND LEAST(OLD.idle_expires_at, OLD.absolute_expires_at)
              >= (extract(epoch FROM clock_timestamp()) * 1000)::bigint - 86400000)
    EXECUTE FUNCTION tessera_notify_session_deleted();
