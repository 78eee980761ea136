//! Discovery: the RFC 8414 authorization-server metadata and the JWKS it points to.

use serde_json::{json, Value};

use crate::helpers::{Backend, TestApp};
use crate::on_both;

on_both!(discovery_documents,);

async fn discovery_documents(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let iss = "http://127.0.0.1:8080";
        assert_eq!(v["issuer"], iss);
        assert_eq!(v["jwks_uri"], format!("{iss}/.well-known/jwks.json"));
        assert_eq!(v["token_endpoint"], format!("{iss}/token"));
        assert_eq!(v["revocation_endpoint"], format!("{iss}/revoke"));
        assert_eq!(v["introspection_endpoint"], format!("{iss}/introspect"));
        assert_eq!(
            v["grant_types_supported"],
            json!(["password", "refresh_token"])
        );
        assert!(v["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("client_secret_basic")));
        assert!(v.to_string().contains("ES256"));
        // Exactly true: no authorization endpoint, so no response type and no implicit grant;
        // no ID token, so no OpenID Connect fields.
        assert_eq!(v["response_types_supported"], json!([]));
        for absent in [
            "authorization_endpoint",
            "id_token_signing_alg_values_supported",
            "subject_types_supported",
            "claims_supported",
        ] {
            assert!(v.get(absent).is_none(), "{path} claims {absent}");
        }
        assert_eq!(
            v["introspection_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post"])
        );
    }
}
