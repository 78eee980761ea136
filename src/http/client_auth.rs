//! The request side of OAuth client authentication (RFC 6749 §2.3), the same for every
//! endpoint that authenticates clients (`/token`, `/revoke`, `/introspect`, `/revocations`):
//! `client_secret_basic` (HTTP Basic) or `client_secret_post` (form parameters), or no secret
//! for the public first-party client. The check itself is `auth::clients`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::SecretString;

use super::error::ApiError;
use super::extract::RequestCaller;
use super::AppState;
use crate::auth::{AuthError, Caller, ClientAuth, ClientId};

/// Whether the request's body is `application/x-www-form-urlencoded` (parameters of the media
/// type, such as `charset`, aside).
pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// A parsed `application/x-www-form-urlencoded` body. RFC 6749 §3.2: parameters must not be
/// repeated, so a repeated one is a malformed request; `resource` is the exception (RFC 8707
/// §2 allows several), kept apart.
pub struct Form(HashMap<String, String>, Vec<String>);

impl Form {
    pub fn parse(
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<Self, ApiError> {
        let body = body?;
        // No body at all is an empty form (a POST /revocations with Basic and no cursor).
        if body.is_empty() {
            return Ok(Form(HashMap::new(), Vec::new()));
        }
        if !is_form(headers) {
            return Err(ApiError::InvalidRequest(
                "expected application/x-www-form-urlencoded".into(),
            ));
        }
        let mut map = HashMap::new();
        let mut resources = Vec::new();
        for (k, v) in form_urlencoded::parse(&body) {
            if k == "resource" {
                resources.push(v.into_owned());
            } else if map.insert(k.into_owned(), v.into_owned()).is_some() {
                return Err(ApiError::InvalidRequest("repeated parameter".into()));
            }
        }
        Ok(Form(map, resources))
    }

    /// The `resource` asked for (RFC 8707 §2), `None` when none (or only empty ones) was
    /// given. Several that name the same resource are that one (openid-client sends an array);
    /// a token is minted for one resource per request, so different ones are refused.
    ///
    /// Errors: `MultipleResources` (400 `invalid_target`).
    pub fn resource(&self) -> Result<Option<&str>, ApiError> {
        let mut named = self.1.iter().map(String::as_str).filter(|r| !r.is_empty());
        let Some(first) = named.next() else {
            return Ok(None);
        };
        if named.any(|r| r != first) {
            return Err(ApiError::MultipleResources);
        }
        Ok(Some(first))
    }

    /// A parameter; empty values count as missing (RFC 6749 §3.1).
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The form as `T`, the type the OpenAPI document shows for it: every parameter as a
    /// string, empty ones left out (RFC 6749 §3.1), `resource` only when one is named (a
    /// repeated one is `resource()`'s to refuse). A required parameter that is missing is
    /// 400 `invalid_request`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        use serde_json::Value;
        let mut map: serde_json::Map<String, Value> = self
            .0
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        if let Ok(Some(resource)) = self.resource() {
            map.insert("resource".into(), Value::String(resource.into()));
        }
        serde_json::from_value(Value::Object(map))
            .map_err(|e| ApiError::InvalidRequest(format!("form: {e}")))
    }
}

/// `Authorization: Basic` credentials, as candidate readings: RFC 6749 §2.3.1 has clients
/// form-urlencode the id and secret before base64, but many send them raw (RFC 7617 Basic,
/// `curl -u`), and a raw secret with `+` or `%` would then decode differently. Both readings
/// are kept and either may match. `Ok(None)` when the header is absent or uses another scheme.
/// Two `Authorization` fields are a malformed request (RFC 9110 §11.6.2 has one credential),
/// 400 `invalid_request`: which one counts is not for the server to guess.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<Vec<(String, SecretString)>>, ApiError> {
    let mut fields = headers.get_all(header::AUTHORIZATION).iter();
    let Some(v) = fields.next() else {
        return Ok(None);
    };
    if fields.next().is_some() {
        return Err(ApiError::InvalidRequest(
            "more than one Authorization header".into(),
        ));
    }
    let v = v.to_str().map_err(|_| BASIC_REFUSED)?;
    let Some((scheme, b64)) = v.split_once(' ') else {
        return Err(BASIC_REFUSED);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let raw = STANDARD.decode(b64.trim()).map_err(|_| BASIC_REFUSED)?;
    let raw = String::from_utf8(raw).map_err(|_| BASIC_REFUSED)?;
    let (id, secret) = raw.split_once(':').ok_or(BASIC_REFUSED)?;
    let decode = |s: &str| -> String {
        let plus = s.replace('+', " ");
        percent_encoding::percent_decode_str(&plus)
            .decode_utf8_lossy()
            .into_owned()
    };
    Ok(Some(vec![
        (decode(id), SecretString::from(decode(secret))),
        (id.to_string(), SecretString::from(secret.to_string())),
    ]))
}

/// A Basic header that cannot be read: `invalid_client`, with the Basic challenge.
const BASIC_REFUSED: ApiError = ApiError::InvalidClient { challenge: true };

/// How the request presents its client: HTTP Basic (`client_secret_basic`), form credentials
/// (`client_secret_post`), or neither (the public client, RFC 6749 §2.1). Using two methods
/// at once is a malformed request (§2.3). The flag says whether the `Authorization` header was
/// used, which decides the challenge of a 401 (RFC 6749 §5.2).
fn presented(headers: &HeaderMap, form: Option<&Form>) -> Result<(ClientAuth, bool), ApiError> {
    let basic = basic_credentials(headers)?;
    let param = |k: &str| form.and_then(|f| f.get(k));
    let client_id = param("client_id").map(str::to_string);
    Ok(match (basic, param("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidRequest(
                "more than one client authentication method".into(),
            ))
        }
        (Some(readings), None) => (
            ClientAuth::Secret {
                readings,
                claimed_id: client_id,
            },
            true,
        ),
        (None, Some(secret)) => (
            ClientAuth::Secret {
                readings: client_id
                    .map(|id| (id, SecretString::from(secret.to_string())))
                    .into_iter()
                    .collect(),
                claimed_id: None,
            },
            false,
        ),
        (None, None) => (ClientAuth::Public { client_id }, false),
    })
}

/// A form-encoded request from an authenticated client (`/revoke`, `/introspect`,
/// `POST /revocations`): the form is read first (a malformed one is 400 `invalid_request`),
/// then the client is authenticated from the `Authorization` header or the form
/// (`invalid_client`, see `authenticate`). `CONFIDENTIAL` refuses the public first-party
/// client.
pub struct ClientForm<const CONFIDENTIAL: bool> {
    /// The authenticated client.
    pub client: ClientId,
    /// The whole form, the client's own parameters included.
    pub form: Form,
}

/// Confidential clients, and the public first-party client.
pub type AnyClientForm = ClientForm<false>;
/// Confidential clients only.
pub type ConfidentialClientForm = ClientForm<true>;

impl<const CONFIDENTIAL: bool> FromRequest<AppState> for ClientForm<CONFIDENTIAL> {
    type Rejection = ApiError;

    #[tracing::instrument(skip_all)]
    async fn from_request(req: Request, st: &AppState) -> Result<Self, ApiError> {
        let headers = req.headers().clone();
        let caller = RequestCaller::of(req.extensions());
        let body = Bytes::from_request(req, st).await;
        let form = Form::parse(&headers, body)?;
        let clients = if CONFIDENTIAL {
            Clients::Confidential
        } else {
            Clients::Any
        };
        let client = authenticate(st, &headers, Some(&form), clients, &caller).await?;
        Ok(ClientForm { client, form })
    }
}

/// Which clients an endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clients {
    /// Confidential clients, and the public first-party client (`/token`, `/revoke`).
    Any,
    /// Confidential clients only (`/introspect`, `/revocations`).
    Confidential,
}

/// Authenticates the client of a request, from its headers and, for a form-encoded request,
/// its form. A failure is `invalid_client`: 401 with `WWW-Authenticate: Basic` when the client
/// used the `Authorization` header, 400 without a challenge otherwise (RFC 6749 §5.2, RFC 9110
/// §15.5.2).
pub async fn authenticate(
    st: &AppState,
    headers: &HeaderMap,
    form: Option<&Form>,
    clients: Clients,
    caller: &Caller,
) -> Result<ClientId, ApiError> {
    let (auth, used_header) = presented(headers, form)?;
    let checked = match clients {
        Clients::Any => st.auth.authenticate_client(&auth, caller).await,
        Clients::Confidential => {
            st.auth
                .authenticate_confidential_client(&auth, caller)
                .await
        }
    };
    checked.map_err(|e| match e {
        AuthError::InvalidClient => ApiError::InvalidClient {
            challenge: used_header,
        },
        other => other.into(),
    })
}
