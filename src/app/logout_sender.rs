//! The HTTP side of Back-Channel Logout: POSTs a logout token to a client's
//! `backchannel_logout_uri` (Back-Channel Logout 1.0 §2.5), for `tessera_auth`'s delivery loop.

use std::time::Duration;

use crate::auth::oidc::LogoutSender;

/// How long a client may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A `LogoutSender` over HTTPS (or HTTP, for loopback URIs the configuration allows).
pub struct HttpLogoutSender {
    /// `None` when no HTTP client could be built (no TLS roots on this system): every
    /// delivery then fails, is retried and recorded, and the server runs on.
    http: Option<reqwest::Client>,
}

impl HttpLogoutSender {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            // A redirect would send the token somewhere the client did not register.
            .redirect(reqwest::redirect::Policy::none())
            .build();
        let http = match http {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "no HTTP client for back-channel logout (TLS roots missing?): logout tokens cannot be delivered");
                None
            }
        };
        HttpLogoutSender { http }
    }
}

impl Default for HttpLogoutSender {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl LogoutSender for HttpLogoutSender {
    async fn post_logout_token(&self, uri: &str, token: &str) -> Result<(), String> {
        let Some(http) = &self.http else {
            return Err("no HTTP client (TLS roots missing)".to_string());
        };
        let res = http
            .post(uri)
            .header(reqwest::header::CACHE_CONTROL, "no-store")
            .form(&[("logout_token", token)])
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "timed out".to_string()
                } else if e.is_connect() {
                    "connection failed".to_string()
                } else {
                    "request failed".to_string()
                }
            })?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(format!("status {}", res.status().as_u16()))
        }
    }
}
