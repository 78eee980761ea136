//! Signing keys: sealed private keys and their lifecycle times.

use async_trait::async_trait;

use super::backend::{on_backend, Backend, SqlStore};
use super::{KeyRow, KeyStore, Reseal, StoreError, StoreResult};

const LIST: &str = "SELECT * FROM signing_keys ORDER BY activate_at, kid";

const RESEAL: &str = "
    UPDATE signing_keys SET private_key_enc = $3 WHERE kid = $1 AND private_key_enc = $2";

const INSERT: &str = "
    INSERT INTO signing_keys (kid, alg, private_key_enc, public_jwk, created_at,
                              publish_at, activate_at, retire_at, remove_at, succeeds)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Every other key that is not retiring sooner retires when the new one starts signing.
const SCHEDULE_RETIREMENT: &str = "
    UPDATE signing_keys SET retire_at = $2, remove_at = $3
    WHERE kid <> $1 AND (retire_at IS NULL OR retire_at > $2)";

#[async_trait]
impl KeyStore for SqlStore {
    async fn keys(&self) -> StoreResult<Vec<KeyRow>> {
        let rows: Vec<KeyRow> =
            on_backend!(self, |b| sqlx::query_as(LIST).fetch_all(b.pool()).await)?;
        Ok(rows)
    }

    async fn insert_key(&self, k: &KeyRow) -> StoreResult<()> {
        self.write_key(k, None).await
    }

    async fn rotate_keys(&self, k: &KeyRow, retire_at: i64, remove_at: i64) -> StoreResult<()> {
        self.write_key(k, Some((retire_at, remove_at))).await
    }

    async fn reseal_keys(&self, reseal: &[Reseal]) -> StoreResult<()> {
        on_backend!(self, |b| {
            let mut tx = b.pool().begin().await?;
            for r in reseal {
                let done = sqlx::query(RESEAL)
                    .bind(&r.kid)
                    .bind(&r.old)
                    .bind(&r.new)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    // Dropping the transaction rolls it back.
                    return Err(StoreError::Other(format!(
                        "signing key {} changed during the rekey; run it again",
                        r.kid
                    )));
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

impl SqlStore {
    /// Inserts `k` and, with `retire`, schedules every other key to retire and leave the JWKS
    /// at those times, in one transaction.
    async fn write_key(&self, k: &KeyRow, retire: Option<(i64, i64)>) -> StoreResult<()> {
        on_backend!(self, |b| {
            let mut tx = b.pool().begin().await?;
            sqlx::query(INSERT)
                .bind(&k.kid)
                .bind(&k.alg)
                .bind(&k.private_key_enc)
                .bind(&k.public_jwk)
                .bind(k.created_at)
                .bind(k.publish_at)
                .bind(k.activate_at)
                // A key that takes over starts with no retirement of its own.
                .bind(k.retire_at.filter(|_| retire.is_none()))
                .bind(k.remove_at.filter(|_| retire.is_none()))
                .bind(&k.succeeds)
                .execute(&mut *tx)
                .await?;
            if let Some((retire_at, remove_at)) = retire {
                sqlx::query(SCHEDULE_RETIREMENT)
                    .bind(&k.kid)
                    .bind(retire_at)
                    .bind(remove_at)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
