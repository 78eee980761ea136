//! The JOSE header policy of Tessera's access tokens: what the server and every verifier
//! accept before a signature is even looked at.
//!
//! - The header is a JSON object whose member names are unique (RFC 7515 §4: a duplicate may
//!   be refused, and is, so that no two parsers read two different headers).
//! - Every registered member present has its registered JSON type (RFC 7515 §4.1, RFC 7797,
//!   RFC 8555 §6.4): `"crit": null` or `"kid": 7` is refused, never read as absent.
//! - `alg` and `kid` are required strings; `alg` is later pinned to the key `kid` names, never
//!   trusted on its own (RFC 8725 §3.1).
//! - `typ` is `at+jwt` or `application/at+jwt`, compared without case (RFC 9068 §4).
//! - `crit` is refused whatever it holds: Tessera understands no extension (RFC 7515
//!   §4.1.11), and `b64` only has meaning under `crit` (RFC 7797 §6).
//! - Members that carry or point at a key (`jku`, `jwk`, `x5u`, `x5c`) are refused: keys come
//!   only from the issuer's JWKS (RFC 8725 §3.10).
//! - `cty` is refused: an access token is never a nested JWT (RFC 7519 §5.2).
//! - JWE members (`enc`, `zip`, `epk`, …) are refused: an access token is a JWS.
//! - Other members are extensions, ignored as RFC 7515 §4 asks.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// What a header that passed the policy says: the algorithm it claims and the key it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessHeader {
    /// `alg`, as written; compare it with the algorithm of the key `kid` names.
    pub alg: String,
    /// `kid`: the JWKS key to verify with.
    pub kid: String,
}

/// Why a header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRefusal {
    /// Not a compact JWS, or a first segment that is not base64url of a JSON object with
    /// unique member names.
    Malformed,
    /// The member named broke the policy (its type, its value, or its presence).
    Member(&'static str),
}

impl fmt::Display for HeaderRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderRefusal::Malformed => f.write_str("malformed header"),
            HeaderRefusal::Member(m) => write!(f, "unacceptable header: {m}"),
        }
    }
}

impl std::error::Error for HeaderRefusal {}

/// What the policy does with a registered member that is present.
#[derive(Clone, Copy)]
enum Rule {
    /// Allowed, as a JSON string.
    String,
    /// Refused, whatever it holds.
    Refused,
}

/// Registered header members (RFC 7515 §4.1, RFC 7516 §4.1, RFC 7518 §4.6-4.8, RFC 7797,
/// RFC 8555 §6.4) and the rule for each.
const REGISTERED: &[(&str, Rule)] = &[
    ("alg", Rule::String),
    ("kid", Rule::String),
    ("typ", Rule::String),
    ("x5t", Rule::String),
    ("x5t#S256", Rule::String),
    ("url", Rule::String),
    ("nonce", Rule::String),
    ("crit", Rule::Refused),
    ("b64", Rule::Refused),
    ("cty", Rule::Refused),
    ("jku", Rule::Refused),
    ("jwk", Rule::Refused),
    ("x5u", Rule::Refused),
    ("x5c", Rule::Refused),
    ("enc", Rule::Refused),
    ("zip", Rule::Refused),
    ("epk", Rule::Refused),
    ("apu", Rule::Refused),
    ("apv", Rule::Refused),
    ("iv", Rule::Refused),
    ("tag", Rule::Refused),
    ("p2s", Rule::Refused),
    ("p2c", Rule::Refused),
];

/// The name under which a refused member is reported: the four that carry keys share one.
fn reported(name: &'static str) -> &'static str {
    match name {
        "jku" | "jwk" | "x5u" | "x5c" => "key reference",
        other => other,
    }
}

/// A JSON object that refuses duplicate member names.
struct UniqueObject(BTreeMap<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueObject, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    if out.insert(k, v).is_some() {
                        return Err(serde::de::Error::custom("duplicate member"));
                    }
                }
                Ok(UniqueObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Checks the protected header of the compact JWS `token` against the policy above.
///
/// Errors: [`HeaderRefusal::Malformed`] (not three segments, or the header is not base64url
/// JSON of an object with unique names), [`HeaderRefusal::Member`] naming the first member
/// that broke the policy (`alg`, `kid`, `typ`, `crit`, `key reference`, …).
pub fn check_access_header(token: &str) -> Result<AccessHeader, HeaderRefusal> {
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeaderRefusal::Malformed);
    };
    let raw = URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| HeaderRefusal::Malformed)?;
    let UniqueObject(members) =
        serde_json::from_slice(&raw).map_err(|_| HeaderRefusal::Malformed)?;
    for (name, rule) in REGISTERED {
        let Some(value) = members.get(*name) else {
            continue;
        };
        match rule {
            Rule::String if value.is_string() => {}
            _ => return Err(HeaderRefusal::Member(reported(name))),
        }
    }
    let string = |name: &'static str| {
        members
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(HeaderRefusal::Member(name))
    };
    match string("typ") {
        Ok(t)
            if t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt") => {
        }
        _ => return Err(HeaderRefusal::Member("typ")),
    }
    let alg = string("alg")?;
    if alg.eq_ignore_ascii_case("none") {
        return Err(HeaderRefusal::Member("alg"));
    }
    Ok(AccessHeader {
        alg: alg.to_string(),
        kid: string("kid")?.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn token(header: &str) -> String {
        format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(header))
    }

    fn check(header: &str) -> Result<AccessHeader, HeaderRefusal> {
        check_access_header(&token(header))
    }

    #[test]
    fn a_tessera_header_passes() {
        let h = check(r#"{"typ":"at+jwt","alg":"ES256","kid":"k1"}"#).unwrap();
        assert_eq!(h.alg, "ES256");
        assert_eq!(h.kid, "k1");
        assert!(check(r#"{"typ":"Application/AT+JWT","alg":"EdDSA","kid":"k","ext":1}"#).is_ok());
        assert!(check(r#"{"typ":"at+jwt","alg":"ES256","kid":"k","x5t#S256":"abc"}"#).is_ok());
    }

    #[test]
    fn registered_members_of_the_wrong_type_are_refused() {
        let m = HeaderRefusal::Member;
        let base = r#""typ":"at+jwt","alg":"ES256","kid":"k1""#;
        for (extra, why) in [
            (r#""crit":null"#, m("crit")),
            (r#""crit":[]"#, m("crit")),
            (r#""crit":["exp"]"#, m("crit")),
            (r#""cty":"JWT""#, m("cty")),
            (r#""cty":null"#, m("cty")),
            (r#""x5t":null"#, m("x5t")),
            (r#""x5t":7"#, m("x5t")),
            (r#""url":[]"#, m("url")),
            (r#""nonce":{}"#, m("nonce")),
            (r#""b64":false"#, m("b64")),
            (r#""jku":"https://evil""#, m("key reference")),
            (r#""jwk":{"kty":"EC"}"#, m("key reference")),
            (r#""x5u":null"#, m("key reference")),
            (r#""x5c":["MII"]"#, m("key reference")),
            (r#""enc":"A128GCM""#, m("enc")),
            (r#""zip":"DEF""#, m("zip")),
        ] {
            assert_eq!(check(&format!("{{{base},{extra}}}")), Err(why), "{extra}");
        }
        for (header, why) in [
            (r#"{"typ":"at+jwt","alg":"ES256","kid":7}"#, m("kid")),
            (r#"{"typ":"at+jwt","alg":"ES256","kid":null}"#, m("kid")),
            (r#"{"typ":"at+jwt","alg":"ES256","kid":""}"#, m("kid")),
            (r#"{"typ":"at+jwt","alg":"ES256"}"#, m("kid")),
            (r#"{"typ":"at+jwt","alg":["ES256"],"kid":"k"}"#, m("alg")),
            (r#"{"typ":"at+jwt","alg":null,"kid":"k"}"#, m("alg")),
            (r#"{"typ":"at+jwt","alg":"none","kid":"k"}"#, m("alg")),
            (r#"{"typ":"at+jwt","kid":"k"}"#, m("alg")),
            (r#"{"typ":["at+jwt"],"alg":"ES256","kid":"k"}"#, m("typ")),
            (r#"{"typ":"JWT","alg":"ES256","kid":"k"}"#, m("typ")),
            (r#"{"alg":"ES256","kid":"k"}"#, m("typ")),
        ] {
            assert_eq!(check(header), Err(why), "{header}");
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        let dup = r#"{"typ":"at+jwt","alg":"ES256","kid":"k1","kid":"k2"}"#;
        assert_eq!(check(dup), Err(HeaderRefusal::Malformed));
        assert_eq!(check(r#"["at+jwt"]"#), Err(HeaderRefusal::Malformed));
        assert_eq!(check("not json"), Err(HeaderRefusal::Malformed));
        assert_eq!(check_access_header("a.b"), Err(HeaderRefusal::Malformed));
        assert_eq!(
            check_access_header("a.b.c.d"),
            Err(HeaderRefusal::Malformed)
        );
        assert_eq!(
            check_access_header("!!!.e30.c2ln"),
            Err(HeaderRefusal::Malformed)
        );
    }
}
