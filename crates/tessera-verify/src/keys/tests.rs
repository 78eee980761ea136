use super::*;

const ALL: &[Algorithm] = &[Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256];
const P256_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const P256_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

fn ec(kid: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut k = serde_json::json!({"kty":"EC","crv":"P-256","x":P256_X,"y":P256_Y,"kid":kid});
    for (n, v) in extra.as_object().unwrap() {
        k[n] = v.clone();
    }
    k
}

fn parse(keys: Vec<serde_json::Value>) -> Vec<String> {
    let body = serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap();
    let mut kids: Vec<String> = parse_jwks(&body, ALL).unwrap().into_keys().collect();
    kids.sort();
    kids
}

#[test]
fn keeps_signing_keys_and_skips_the_rest() {
    let kids = parse(vec![
        ec("plain", serde_json::json!({})),
        ec("alg", serde_json::json!({"alg":"ES256","use":"sig"})),
        ec("enc", serde_json::json!({"use":"enc"})),
        ec("ops", serde_json::json!({"key_ops":["sign"]})),
        ec("wrong-curve", serde_json::json!({"alg":"ES384"})),
        ec("not-accepted", serde_json::json!({"alg":"RS256"})),
        serde_json::json!({"kty":"oct","k":"c2VjcmV0","kid":"hmac","alg":"HS256"}),
        serde_json::json!({"kty":"EC","crv":"P-256","x":P256_X,"y":P256_Y}),
        serde_json::json!({"kty":"weird","kid":"weird"}),
    ]);
    assert_eq!(kids, vec!["alg", "plain"]);
}

#[test]
fn a_kid_listed_twice_is_dropped() {
    let kids = parse(vec![
        ec("dup", serde_json::json!({})),
        ec("dup", serde_json::json!({})),
        ec("one", serde_json::json!({})),
    ]);
    assert_eq!(kids, vec!["one"]);
}

#[test]
fn a_document_that_is_not_a_set_is_an_error() {
    assert!(parse_jwks(b"[]", ALL).is_err());
    assert!(parse_jwks(b"{\"keys\":{}}", ALL).is_err());
    assert!(parse_jwks(b"not json", ALL).is_err());
    assert!(parse_jwks(b"{\"keys\":[]}", ALL).unwrap().is_empty());
}
