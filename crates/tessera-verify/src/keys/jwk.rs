//! Reading a JWK set (RFC 7517 §5): which of its keys may verify a token, and with which
//! algorithm (RFC 7518 §3.1, pinned by the key, never by the token).

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::Key;

/// The usable keys of a JWKS document, by `kid`. A key is usable when it has a `kid`, is
/// meant for signatures (`use` absent or `sig`; `key_ops`, if present, includes `verify`), is
/// asymmetric, and its algorithm (its `alg`, or the one its curve implies) is accepted and
/// fits its type and curve. Other keys are skipped, so one odd key does not take the set down.
/// A `kid` listed twice is dropped altogether: which key it means is ambiguous.
/// Errors: the document is not a JSON object with a `keys` array.
pub(crate) fn parse_jwks(
    body: &[u8],
    accepted: &[Algorithm],
) -> Result<HashMap<String, Arc<Key>>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|_| "not a JWK set".to_string())?;
    let mut out = HashMap::new();
    let mut twice = Vec::new();
    for value in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let Some(key) = usable(&jwk, accepted) else {
            tracing::debug!(%kid, "skipping a key this verifier does not accept");
            continue;
        };
        if out.insert(kid.clone(), Arc::new(key)).is_some() {
            twice.push(kid);
        }
    }
    for kid in twice {
        tracing::warn!(%kid, "the key set lists this kid twice; neither key is trusted");
        out.remove(&kid);
    }
    Ok(out)
}

fn usable(jwk: &Jwk, accepted: &[Algorithm]) -> Option<Key> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops
            .iter()
            .any(|op| matches!(op, jsonwebtoken::jwk::KeyOperations::Verify))
        {
            return None;
        }
    }
    let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(a), _) => signing_alg(*a)?,
        (None, AlgorithmParameters::EllipticCurve(p)) => match p.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        (None, AlgorithmParameters::OctetKeyPair(p)) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        // An RSA key without `alg` could mean PKCS#1 v1.5 or PSS: too ambiguous to pin.
        _ => return None,
    };
    let fits = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384) => p.curve == EllipticCurve::P384,
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            p.curve == EllipticCurve::Ed25519
        }
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        _ => false,
    };
    if !fits || !accepted.contains(&alg) {
        return None;
    }
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key { alg, decoding })
}

/// The JWS algorithm of a JWK `alg`, for asymmetric signing algorithms only.
fn signing_alg(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}
