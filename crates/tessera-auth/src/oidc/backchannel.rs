//! Back-Channel Logout 1.0: logout tokens POSTed to the clients of an ended SSO session, from
//! durable rows (invariant 10). Each row is claimed by one replica under a lease, signed at
//! each attempt (the row's id is the token's `jti`, so a receiver can tell a retry), and
//! retried with exponential backoff until it is delivered or given up. A client that fails
//! blocks nothing: the logout itself was complete when the rows were written.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::audit::{Caller, Event, Record};
use crate::store::LogoutDelivery;
use crate::time::{now_ms, UnixMillis};
use crate::{tokens, Auth, AuthError};

/// Attempts before a delivery is given up: 8, over about four minutes (1 s, 2 s, … 128 s).
pub const MAX_ATTEMPTS: i64 = 8;
/// How long a replica holds a claimed delivery before another may try it.
const LEASE: Duration = Duration::from_secs(30);
/// How often due deliveries are looked for.
const POLL: Duration = Duration::from_secs(1);
/// Deliveries claimed at once.
const BATCH: i64 = 16;
/// The event of a logout token (Back-Channel Logout 1.0 §2.4).
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How logout tokens leave the server: an HTTP POST, which the domain does not make itself.
#[async_trait::async_trait]
pub trait LogoutSender: Send + Sync {
    /// POSTs `logout_token=<token>` (form-encoded) to `uri`. `Ok` only for a 2xx answer.
    ///
    /// Errors: a short reason (the status, a timeout, a refused connection), for the audit
    /// trail; never the token.
    async fn post_logout_token(&self, uri: &str, token: &str) -> Result<(), String>;
}

#[derive(Serialize)]
struct LogoutClaims<'a> {
    iss: &'a str,
    sub: String,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
    sid: String,
    events: serde_json::Value,
}

/// The wait before attempt `attempts + 1`: 2^(attempts-1) s.
fn backoff(attempts: i64) -> i64 {
    1000 << (attempts - 1).clamp(0, 16)
}

impl Auth {
    /// The logout token of `d` (typ `logout+jwt`, no `nonce`; Back-Channel Logout 1.0 §2.4).
    ///
    /// Errors: `Unavailable` (no key signs), `Internal`.
    pub fn logout_token(&self, d: &LogoutDelivery) -> Result<String, AuthError> {
        let now = UnixMillis::now();
        let ring = self.keys.ring();
        let key = ring
            .signer_at(now.0)
            .ok_or(AuthError::Unavailable("no active signing key"))?;
        let iat = now.as_secs();
        let claims = LogoutClaims {
            iss: &self.settings.tokens.issuer,
            sub: d.user_id.to_string(),
            aud: &d.client_id,
            iat,
            exp: iat + 120,
            jti: d.id.to_string(),
            sid: d.sso_session_id.to_string(),
            events: serde_json::json!({ EVENT: {} }),
        };
        let header = serde_json::json!({ "alg": key.alg, "kid": key.kid, "typ": "logout+jwt" });
        tokens::sign_jws(key, &header, &claims)
            .map_err(|e| AuthError::Internal(format!("signing failed: {e}")))
    }

    /// Delivers due logout tokens until the process ends.
    pub async fn run_backchannel(self: Arc<Self>, sender: Arc<dyn LogoutSender>) {
        loop {
            match self.deliver_due(sender.as_ref()).await {
                // A full batch: more may be due at once.
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "back-channel deliveries not claimed"),
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// One round: claims the due deliveries and attempts each. Returns how many it claimed.
    ///
    /// Errors: `StoreUnavailable` (nothing was claimed).
    pub async fn deliver_due(&self, sender: &dyn LogoutSender) -> Result<usize, AuthError> {
        let now = now_ms();
        let due = self
            .store
            .claim_deliveries(now, now + LEASE.as_millis() as i64, BATCH)
            .await?;
        let n = due.len();
        let attempts = due.into_iter().map(|d| self.attempt(sender, d));
        futures_util::future::join_all(attempts).await;
        Ok(n)
    }

    async fn attempt(&self, sender: &dyn LogoutSender, d: LogoutDelivery) {
        let sent = match self.logout_token(&d) {
            Ok(token) => sender.post_logout_token(&d.uri, &token).await,
            Err(e) => Err(e.to_string()),
        };
        let now = now_ms();
        let record = Record::user(d.user_id).client(&d.client_id);
        let stored = match &sent {
            Ok(()) => {
                self.audit(&Caller::default(), Event::BackchannelDelivered, record)
                    .await;
                self.store.delivery_done(d.id, now).await
            }
            Err(why) => {
                let next = (d.attempts < MAX_ATTEMPTS).then(|| now + backoff(d.attempts));
                let reason = if next.is_some() {
                    "retrying"
                } else {
                    "gave_up"
                };
                tracing::warn!(client_id = %d.client_id, attempt = d.attempts, error = %why, "back-channel logout not delivered");
                self.audit(
                    &Caller::default(),
                    Event::BackchannelFailed,
                    record.reason(reason),
                )
                .await;
                self.store.delivery_failed(d.id, next, why, now).await
            }
        };
        if let Err(e) = stored {
            // The lease ends and another attempt follows: at worst the client gets the token
            // twice, with the same jti.
            tracing::warn!(error = %e, "back-channel delivery outcome not stored");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_from_a_second() {
        assert_eq!(super::backoff(1), 1000);
        assert_eq!(super::backoff(2), 2000);
        assert_eq!(super::backoff(8), 128_000);
    }
}
