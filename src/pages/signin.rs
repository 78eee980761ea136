//! What every hosted sign-in form (`/authorize`, `/account`, `/device`) shows for a refused
//! password or second factor, in one place.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};

use crate::auth::mfa::SecondFactor;
use crate::auth::AuthError;

/// What the login pages say to an account that must have a second factor and has none.
pub(super) const ENROL_FIRST: &str =
    "This account needs a second factor and has none. Ask an administrator for help.";

/// What the login pages say to an account whose address is not verified yet
/// (`accounts.require_verified_email`), after a correct password only.
pub(super) const VERIFY_FIRST: &str =
    "Verify your email address first: open the link we sent you, or ask for a new one.";

/// What a second-step page says when neither field was filled in.
pub(super) const NO_CODE: &str = "Enter the code from your app, or a recovery code.";

/// What a login page says when a passkey was not accepted.
pub(super) const PASSKEY_REFUSED: &str =
    "That passkey was not accepted. Try again, or sign in with your password.";

/// The second factor a second-step form names (`passkey`, the page script's assertion, else
/// `code`, else `recovery_code`), if any.
pub(super) fn factor_from_form<'a>(
    field: impl Fn(&str) -> Option<&'a str>,
) -> Option<SecondFactor> {
    let filled = |name: &str| {
        field(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| SecretString::from(v.to_string()))
    };
    if let Some(p) = filled("passkey") {
        return Some(SecondFactor::Passkey(p.expose_secret().to_string()));
    }
    match (filled("code"), filled("recovery_code")) {
        (Some(c), _) => Some(SecondFactor::Totp(c)),
        (None, Some(c)) => Some(SecondFactor::RecoveryCode(c)),
        (None, None) => None,
    }
}

/// What a page says while the throttle holds attempts back.
pub(super) fn too_many(retry_after_secs: u64) -> String {
    format!(
        "Too many attempts. Try again in {}.",
        seconds(retry_after_secs)
    )
}

/// "1 second", "5 seconds".
pub(super) fn seconds(n: u64) -> String {
    match n {
        1 => "1 second".into(),
        n => format!("{n} seconds"),
    }
}

/// A login's second step as its page shows it: the `mfa_token`, and the methods the user can
/// complete it with (`mfa_methods`, space-separated), which the form carries back so that a
/// page shown again after a wrong code offers the same. Only those fields are shown: no code
/// field for a user without TOTP, no passkey button for one without a passkey.
pub(super) struct SecondStep {
    pub token: SecretString,
    pub methods: String,
}

impl SecondStep {
    /// The step a second-step form carries: its `mfa_token` and `methods` (unknown names
    /// dropped; none, or none known: every method).
    pub(super) fn from_form(token: Option<&str>, methods: Option<&str>) -> Self {
        let known: Vec<&str> = methods
            .unwrap_or_default()
            .split(' ')
            .filter(|m| crate::auth::mfa::METHODS.contains(m))
            .collect();
        let methods = match known.is_empty() {
            true => crate::auth::mfa::METHODS.join(" "),
            false => known.join(" "),
        };
        SecondStep {
            token: SecretString::from(token.unwrap_or_default().to_string()),
            methods,
        }
    }

    /// The methods offered, for the page.
    pub(super) fn offers(&self) -> Vec<&str> {
        self.methods.split(' ').collect()
    }
}

/// What every hosted sign-in form (`/authorize`, `/account`, `/device`) shows when a password
/// sign-in is refused: the login form again with a message, or the second step.
pub(super) enum PasswordRefused {
    /// The login form again, with this status and message (a 429 also carries
    /// `Retry-After`: see `Again::respond`).
    Again(Again),
    /// The password was right and a second factor is due.
    SecondStep(SecondStep),
    /// Anything else (logged): the "unavailable" page.
    Unavailable,
}

/// The login form again: its status, its message, and for a 429 the wait.
pub(super) struct Again {
    pub status: StatusCode,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl Again {
    /// `render(status, message)` (the page's own login form), made a 429 with `Retry-After`
    /// when throttled.
    pub fn respond(self, render: impl FnOnce(StatusCode, &str) -> Response) -> Response {
        let res = render(self.status, &self.message);
        match self.retry_after_secs {
            Some(secs) => throttled(res, secs),
            None => res,
        }
    }
}

/// The one mapping of a refused password sign-in to a page, for every hosted form.
pub(super) fn password_refused(e: AuthError, page: &str) -> PasswordRefused {
    let again = |status, message: &str| {
        PasswordRefused::Again(Again {
            status,
            message: message.to_string(),
            retry_after_secs: None,
        })
    };
    match e {
        AuthError::InvalidCredentials => again(StatusCode::OK, "Incorrect username or password."),
        AuthError::BadInput(_) => {
            again(StatusCode::BAD_REQUEST, "Enter your username and password.")
        }
        AuthError::MfaRequired(m) => PasswordRefused::SecondStep(SecondStep {
            token: m.mfa_token,
            methods: m.methods.join(" "),
        }),
        AuthError::MfaEnrolmentRequired => again(StatusCode::FORBIDDEN, ENROL_FIRST),
        AuthError::EmailNotVerified => again(StatusCode::FORBIDDEN, VERIFY_FIRST),
        AuthError::Throttled { retry_after_secs } => PasswordRefused::Again(Again {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: too_many(retry_after_secs),
            retry_after_secs: Some(retry_after_secs),
        }),
        e => {
            tracing::warn!(error = %e, page, "hosted sign-in failed");
            PasswordRefused::Unavailable
        }
    }
}

/// `res` as a 429 with `Retry-After`.
pub(super) fn throttled(mut res: Response, retry_after_secs: u64) -> Response {
    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}
