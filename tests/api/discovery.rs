//! Discovery: the RFC 8414 metadata, which is also the OpenID Provider configuration.

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
            json!([
                "authorization_code",
                "password",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:device_code",
                "urn:tessera:params:oauth:grant-type:mfa"
            ])
        );
        assert!(v["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("client_secret_basic")));
        assert!(v.to_string().contains("ES256"));
        // An OpenID Provider configuration (OIDC Discovery §3), true of this server.
        assert_eq!(v["authorization_endpoint"], format!("{iss}/authorize"));
        assert_eq!(v["userinfo_endpoint"], format!("{iss}/userinfo"));
        assert_eq!(v["response_types_supported"], json!(["code"]));
        assert_eq!(v["response_modes_supported"], json!(["query", "form_post"]));
        assert_eq!(v["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(v["subject_types_supported"], json!(["public"]));
        assert_eq!(v["authorization_response_iss_parameter_supported"], true);
        assert!(v["id_token_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("RS256")));
        assert!(v["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("openid")));
        assert!(v["claims_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("sub")));
        assert_eq!(v["end_session_endpoint"], format!("{iss}/end_session"));
        assert_eq!(v["backchannel_logout_supported"], true);
        assert_eq!(v["backchannel_logout_session_supported"], true);
        assert_eq!(
            v["pushed_authorization_request_endpoint"],
            format!("{iss}/par")
        );
        assert_eq!(
            v["device_authorization_endpoint"],
            format!("{iss}/device_authorization")
        );
        // Nothing it does not do: no front-channel logout, no dynamic registration.
        for absent in ["frontchannel_logout_supported", "registration_endpoint"] {
            assert!(v.get(absent).is_none(), "{path} claims {absent}");
        }
        assert_eq!(
            v["introspection_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post"])
        );
    }
}
