use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::helpers::spawn_app;

#[tokio::test]
async fn discovery_document_describes_this_issuer() {
    let app = spawn_app().await;
    let response = app.get("/.well-known/openid-configuration").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let cache = response.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cache.starts_with("public, max-age="), "{cache}");
    let doc: Value = response.json().await.unwrap();

    // OIDC Discovery §4.3: issuer is exactly the configured string.
    assert_eq!(doc["issuer"], app.issuer.as_str());
    assert_eq!(doc["jwks_uri"], app.url("/jwks.json"));
    assert_eq!(doc["authorization_endpoint"], app.url("/authorize"));
    assert_eq!(doc["token_endpoint"], app.url("/token"));
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        doc["subject_types_supported"],
        serde_json::json!(["public"])
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    for method in doc["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap()
    {
        assert!(
            ["client_secret_basic", "client_secret_post", "none"]
                .contains(&method.as_str().unwrap()),
            "{method}"
        );
    }
}

#[tokio::test]
async fn rfc8414_metadata_is_the_same_document() {
    let app = spawn_app().await;
    let oidc = app.get_json("/.well-known/openid-configuration").await;
    let oauth = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(oidc, oauth);
}

#[tokio::test]
async fn discovery_and_jwks_are_readable_cross_origin() {
    let app = spawn_app().await;
    for path in ["/.well-known/openid-configuration", "/jwks.json"] {
        let response = app
            .http
            .get(app.url(path))
            .header("Origin", "https://app.example")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "*",
            "{path}"
        );
    }
}

fn thumbprint(jwk: &Value) -> String {
    let canonical = format!(
        r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
        jwk["e"].as_str().unwrap(),
        jwk["n"].as_str().unwrap()
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[tokio::test]
async fn jwks_publishes_public_members_only_with_rfc7638_kid() {
    let app = spawn_app().await;
    let response = app.get("/jwks.json").await;
    assert_eq!(response.status(), 200);
    let cache = response.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cache.starts_with("public, max-age="), "{cache}");
    let jwks: Value = response.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["e"], "AQAB");
    // 2048-bit modulus: 256 bytes, 342 base64url characters.
    assert_eq!(key["n"].as_str().unwrap().len(), 342);
    assert_eq!(key["kid"].as_str().unwrap(), thumbprint(key));
    let members: Vec<&str> = key
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        assert!(
            !members.contains(&private),
            "private member {private} published"
        );
    }
}

/// A certified client library accepts the discovery document and the JWKS.
#[tokio::test]
async fn openidconnect_crate_discovers_the_provider() {
    use openidconnect::core::CoreProviderMetadata;
    use openidconnect::{IssuerUrl, JsonWebKey};

    let app = spawn_app().await;
    let http = openidconnect::reqwest::Client::builder()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let issuer = IssuerUrl::new(app.issuer.clone()).unwrap();
    let metadata = CoreProviderMetadata::discover_async(issuer, &http)
        .await
        .expect("openidconnect accepts the discovery document and JWKS");
    assert_eq!(metadata.issuer().as_str(), app.issuer);
    assert_eq!(metadata.jwks_uri().as_str(), app.url("/jwks.json"));
    let keys = metadata.jwks().keys();
    assert_eq!(keys.len(), 1);
    let jwks = app.get_json("/jwks.json").await;
    assert_eq!(
        keys[0].key_id().map(|k| k.as_str().to_string()),
        jwks["keys"][0]["kid"].as_str().map(str::to_string)
    );
}
