use super::*;

fn auth(values: &[&str]) -> Result<String, &'static str> {
    let mut h = http::HeaderMap::new();
    for v in values {
        h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
    }
    bearer(&h).map_err(|r| match r {
        Refusal::Ambiguous => "ambiguous",
        Refusal::Token(VerifyError::Missing) => "missing",
        Refusal::Token(VerifyError::Malformed) => "malformed",
        Refusal::Token(_) => "other",
    })
}

#[test]
fn reads_one_bearer_token() {
    assert_eq!(auth(&["Bearer a.b.c"]), Ok("a.b.c".into()));
    assert_eq!(auth(&["bearer  a.b.c "]), Ok("a.b.c".into()));
    assert_eq!(auth(&[]), Err("missing"));
    assert_eq!(auth(&["Basic dXNlcjpwYXNz"]), Err("missing"));
    assert_eq!(auth(&["Bearer"]), Err("missing"));
    assert_eq!(auth(&["Bearer "]), Err("malformed"));
    assert_eq!(auth(&["Bearer a b"]), Err("malformed"));
    assert_eq!(auth(&["Bearer a.b.c", "Bearer d.e.f"]), Err("ambiguous"));
}

/// Every refusal, under every policy: status, error code and challenge.
#[test]
fn refusals_follow_rfc_6750() {
    use VerifyError as E;
    let all = [
        E::Missing,
        E::Malformed,
        E::Header("typ"),
        E::UnknownKey,
        E::Signature,
        E::Expired,
        E::NotYetValid,
        E::Claim("iss"),
        E::Revoked,
        E::MissingRole,
        E::MissingScope,
        E::KeysUnavailable,
        E::RevocationStale,
    ];
    for policy in [
        StalePolicy::Reject,
        StalePolicy::Unavailable,
        StalePolicy::Accept,
    ] {
        for e in all.iter().cloned() {
            let (status, code) = match &e {
                E::MissingRole | E::MissingScope => (403, "insufficient_scope"),
                e if e.is_unavailable() && policy == StalePolicy::Unavailable => {
                    (503, "temporarily_unavailable")
                }
                _ => (401, "invalid_token"),
            };
            let what = format!("{e:?} {policy:?}");
            let e_kind = e.clone();
            let r = Refusal::Token(e).respond::<Full<Bytes>>(policy);
            assert_eq!(r.status(), status, "{what}");
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store", "{what}");
            match r.headers().get(header::WWW_AUTHENTICATE) {
                Some(www) if matches!(e_kind, E::Missing) => {
                    assert_eq!(www, "Bearer", "{what}");
                }
                Some(www) => {
                    let www = www.to_str().unwrap();
                    assert!(
                        www.starts_with(&format!("Bearer error=\"{code}\"")),
                        "{what}: {www}"
                    );
                }
                None => {
                    assert_eq!(status, 503, "{what}");
                    assert_eq!(r.headers()[header::RETRY_AFTER], "5");
                }
            }
        }
    }
    let r = Refusal::Ambiguous.respond::<Full<Bytes>>(StalePolicy::Reject);
    assert_eq!(r.status(), 400);
    assert!(r.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains("invalid_request"));
}
