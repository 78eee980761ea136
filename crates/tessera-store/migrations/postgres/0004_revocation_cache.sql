-- The in-memory revocation state of every replica (see src/auth/revocation.rs) is kept in step
-- by these notifications. They fire on any write, whoever makes it: a replica, the CLI, or an
-- operator's own SQL. Payloads name the row; the polled feed is the safety net.

CREATE INDEX users_updated_at_idx ON users (updated_at);

CREATE FUNCTION tessera_notify_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('tessera_changes', 'user:' || OLD.id::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('tessera_changes', 'user:' || NEW.id::text);
    RETURN NEW;
END $$;

CREATE TRIGGER users_notify AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION tessera_notify_user();

CREATE FUNCTION tessera_notify_session_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tessera_changes',
                      'session:' || NEW.id::text || ':' || NEW.revoked_at::text);
    RETURN NEW;
END $$;

-- Only the revocation itself: rotations (the refresh hot path) do not fire it.
CREATE TRIGGER sessions_notify_revoked AFTER UPDATE ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION tessera_notify_session_revoked();

CREATE FUNCTION tessera_notify_token_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tessera_changes',
                      'jti:' || NEW.expires_at::text || ':' || NEW.jti);
    RETURN NEW;
END $$;

CREATE TRIGGER revoked_tokens_notify AFTER INSERT ON revoked_tokens
    FOR EACH ROW EXECUTE FUNCTION tessera_notify_token_revoked();
