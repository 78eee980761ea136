//! The SQL of authorization codes and pushed requests (`oidc.rs`): issued at `/authorize`,
//! exchanged once at `/token`.

use async_trait::async_trait;
use uuid::Uuid;

use super::backend::{on_backend, Backend, SqlStore};
use super::sso::{user_columns, UserColumns};
use super::{AuthorizationCode, CodeExchange, CodeStore, Exchanged, StoreResult};

const PUSH: &str = "
    INSERT INTO pushed_requests (uri_hash, client_id, params, expires_at) VALUES ($1, $2, $3, $4)";

const PUSHED: &str = "
    SELECT params FROM pushed_requests WHERE uri_hash = $1 AND client_id = $2 AND expires_at > $3";

const TAKE_PUSHED: &str = "
    DELETE FROM pushed_requests WHERE uri_hash = $1 AND client_id = $2 AND expires_at > $3
    RETURNING params";

const INSERT_CODE: &str = "
    INSERT INTO authorization_codes (code_hash, client_id, redirect_uri, code_challenge, nonce,
        scope, resource, sso_session_id, user_id, auth_time, amr, created_at, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

/// The condition that a code's sign-in (`$code`, its `amr`) still satisfies its user (`$user`):
/// it had a second factor, or the user has none confirmed. A code issued from a password-only
/// sign-in before the user confirmed a factor is refused, as its SSO session is at its next
/// use (the factor ended the user's other sessions).
macro_rules! second_factor_kept {
    ($code:literal, $user:literal) => {
        concat!(
            "((' ' || ",
            $code,
            ".amr || ' ') LIKE '% mfa %' OR NOT EXISTS (SELECT 1 FROM mfa_factors f
               WHERE f.user_id = ",
            $user,
            ".id AND f.confirmed_at IS NOT NULL))"
        )
    };
}

/// The whole exchange on Postgres in one statement (one round trip, invariant 7): the code is
/// marked used only when it is presented as it was bound (its client, redirect URI and PKCE
/// challenge: anything else leaves it as it is, for its client), its expiry and its user's fence
/// (`FOR SHARE`, as a login's) are checked, and the session is created only when both hold.
/// The SSO session's row is held too: an ending of it (a logout) that wrote first is waited
/// for and refuses the exchange; one that comes after finds the new session and ends it. The
/// answer is the code (none: unknown, used before, or not presented as bound) with its user's
/// columns, which are null when the checks failed.
const EXCHANGE_PG: &str = concat!(
    "
    WITH redeemed AS (
        UPDATE authorization_codes SET used_at = $3, session_id = $2
        WHERE code_hash = $1 AND used_at IS NULL
          AND client_id = $4 AND redirect_uri = $5 AND code_challenge = $6
        RETURNING *),
    fenced AS (
        SELECT u.* FROM redeemed c
        JOIN users u ON u.id = c.user_id
        JOIN sso_sessions s ON s.id = c.sso_session_id AND s.user_id = u.id
        WHERE c.expires_at > $3 AND NOT u.disabled AND s.revoked_at IS NULL
          AND s.idle_expires_at > $3 AND s.absolute_expires_at > $3
          AND s.created_at > u.tokens_not_before AND ",
    second_factor_kept!("c", "u"),
    "
        FOR SHARE OF u, s),
    created AS (
        INSERT INTO sessions (id, user_id, generation, created_at, last_refreshed_at,
                              idle_expires_at, absolute_expires_at, user_agent, ip, client_id,
                              scope, resource, sso_session_id, amr)
        SELECT $2, c.user_id, $7, $8, $9, $10, $11, $12, $13, $14, c.scope, c.resource,
               c.sso_session_id, c.amr
        FROM redeemed c JOIN fenced f ON f.id = c.user_id
        RETURNING id)
    SELECT c.*, ",
    user_columns!(),
    ", (SELECT count(*) FROM created) AS created
    FROM redeemed c LEFT JOIN fenced u ON u.id = c.user_id"
);

/// A row of `EXCHANGE_PG` or `EXCHANGE_SQLITE`: the code, and its user when the exchange
/// created the session.
#[derive(sqlx::FromRow)]
struct ExchangeRow {
    #[sqlx(flatten)]
    code: AuthorizationCode,
    #[sqlx(flatten)]
    user: UserColumns,
    created: i64,
}

impl ExchangeRow {
    fn into_exchanged(self) -> Exchanged {
        match (self.created, self.user.into_user()) {
            (1, Some(user)) => Exchanged::Issued {
                code: Box::new(self.code),
                user: Box::new(user),
            },
            _ => Exchanged::Refused,
        }
    }
}

/// A used code presented again as it was bound (its client, redirect URI and PKCE verifier):
/// only its own client can make a replay revoke what the code produced, not whoever saw the
/// code in a log or a Referer.
const MARK_REPLAYED: &str = "
    UPDATE authorization_codes
    SET replayed_at = CASE WHEN replayed_at IS NULL THEN $2 ELSE replayed_at END
    WHERE code_hash = $1 AND used_at IS NOT NULL
      AND client_id = $3 AND redirect_uri = $4 AND code_challenge = $5
    RETURNING *";

#[async_trait]
impl CodeStore for SqlStore {
    async fn push_request(
        &self,
        uri_hash: &str,
        client_id: &str,
        params: &str,
        expires_at: i64,
    ) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(PUSH)
            .bind(uri_hash)
            .bind(client_id)
            .bind(params)
            .bind(expires_at)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn pushed_request(
        &self,
        uri_hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<String>> {
        let row: Option<(String,)> = on_backend!(self, |b| sqlx::query_as(PUSHED)
            .bind(uri_hash)
            .bind(client_id)
            .bind(now)
            .fetch_optional(b.pool())
            .await)?;
        Ok(row.map(|(p,)| p))
    }

    async fn take_pushed_request(
        &self,
        uri_hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<String>> {
        let row: Option<(String,)> = on_backend!(self, |b| sqlx::query_as(TAKE_PUSHED)
            .bind(uri_hash)
            .bind(client_id)
            .bind(now)
            .fetch_all(b.pool())
            .await
            .map(crate::backend::returned))?;
        Ok(row.map(|(p,)| p))
    }

    async fn insert_code(&self, c: &AuthorizationCode) -> StoreResult<()> {
        on_backend!(self, |b| sqlx::query(INSERT_CODE)
            .bind(&c.code_hash)
            .bind(&c.client_id)
            .bind(&c.redirect_uri)
            .bind(&c.code_challenge)
            .bind(&c.nonce)
            .bind(&c.scope)
            .bind(&c.resource)
            .bind(c.sso_session_id)
            .bind(c.user_id)
            .bind(c.auth_time)
            .bind(&c.amr)
            .bind(c.created_at)
            .bind(c.expires_at)
            .execute(b.pool())
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn exchange_code(&self, x: &CodeExchange<'_>) -> StoreResult<Exchanged> {
        let outcome = match self {
            SqlStore::Postgres(b) => exchange_query(EXCHANGE_PG, x)
                .fetch_optional(b.pool())
                .await?
                .map(ExchangeRow::into_exchanged),
            SqlStore::Sqlite(b) => exchange_query(EXCHANGE_SQLITE, x)
                .fetch_optional(b.pool())
                .await?
                .map(ExchangeRow::into_exchanged),
        };
        if let Some(done) = outcome {
            return Ok(done);
        }
        let used: Option<AuthorizationCode> = on_backend!(self, |b| sqlx::query_as(MARK_REPLAYED)
            .bind(x.code_hash)
            .bind(x.now)
            .bind(x.client_id)
            .bind(x.redirect_uri)
            .bind(x.code_challenge)
            .fetch_all(b.pool())
            .await
            .map(crate::backend::returned))?;
        Ok(used.map_or(Exchanged::Unknown, |c| Exchanged::Replayed(Box::new(c))))
    }
}

/// The exchange on SQLite, as three statements sent in one call (one trip to the database
/// thread; invariant 7). The mark is the first write, so exactly one exchange wins; the session
/// is created only for the winner (`session_id`), only if the code has not been presented again
/// since (`replayed_at`: a replay that slips between the mark and the session leaves nothing to
/// revoke, so the session is then not created) and under its user's fence, which SQLite's
/// single writer makes atomic with the insert. The last statement reads the outcome, with the
/// user's columns only if the fence still holds.
const EXCHANGE_SQLITE: &str = concat!(
    "
    UPDATE authorization_codes SET used_at = $3, session_id = $2
    WHERE code_hash = $1 AND used_at IS NULL
      AND client_id = $4 AND redirect_uri = $5 AND code_challenge = $6;
    INSERT INTO sessions (id, user_id, generation, created_at, last_refreshed_at,
                          idle_expires_at, absolute_expires_at, user_agent, ip, client_id,
                          scope, resource, sso_session_id, amr)
    SELECT $2, c.user_id, $7, $8, $9, $10, $11, $12, $13, $14, c.scope, c.resource,
           c.sso_session_id, c.amr
    FROM authorization_codes c
    JOIN users u ON u.id = c.user_id
    JOIN sso_sessions s ON s.id = c.sso_session_id AND s.user_id = u.id
    WHERE c.code_hash = $1 AND c.session_id = $2 AND c.replayed_at IS NULL
      AND c.expires_at > $3 AND c.client_id = $4 AND c.redirect_uri = $5
      AND c.code_challenge = $6 AND NOT u.disabled AND s.revoked_at IS NULL
      AND s.idle_expires_at > $3 AND s.absolute_expires_at > $3
      AND s.created_at > u.tokens_not_before AND ",
    second_factor_kept!("c", "u"),
    ";
    SELECT c.*, ",
    user_columns!(),
    ",
           (SELECT count(*) FROM sessions WHERE id = $2) AS created
    FROM authorization_codes c
    LEFT JOIN users u ON u.id = c.user_id AND NOT u.disabled
      AND EXISTS (SELECT 1 FROM sso_sessions s
                  WHERE s.id = c.sso_session_id AND s.created_at > u.tokens_not_before)
      AND ",
    second_factor_kept!("c", "u"),
    "
    WHERE c.code_hash = $1 AND c.session_id = $2"
);

/// `EXCHANGE_PG` or `EXCHANGE_SQLITE` with its arguments.
fn exchange_query<'q, DB>(
    sql: &'static str,
    x: &CodeExchange<'q>,
) -> sqlx::query::QueryAs<'q, DB, ExchangeRow, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    ExchangeRow: for<'r> sqlx::FromRow<'r, DB::Row>,
    Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let s = x.session;
    sqlx::query_as(sql)
        .bind(x.code_hash)
        .bind(s.id)
        .bind(x.now)
        .bind(x.client_id)
        .bind(x.redirect_uri)
        .bind(x.code_challenge)
        .bind(s.generation)
        .bind(s.created_at)
        .bind(s.last_refreshed_at)
        .bind(s.idle_expires_at)
        .bind(s.absolute_expires_at)
        .bind(s.user_agent.clone())
        .bind(s.ip.clone())
        .bind(s.client_id.as_str())
}
