-- What a user allowed a client that is not first-party: the scopes granted on the consent
-- page, so that the next authorization asking for no more needs no page.
CREATE TABLE consents (
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,                    -- space-separated; may be empty
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
