-- no-transaction
-- The refresh sessions of an SSO session, found when it ends (end_session, logout, a
-- cut-off) without reading every session. Only sessions created through the hosted pages
-- carry one; the index leaves the others out. Built without blocking writes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS sessions_sso_session_idx ON sessions (sso_session_id)
    WHERE sso_session_id IS NOT NULL;
