//! The authorization code flow driven by a real relying-party library (the Rust
//! `openidconnect` crate) and by hand, the way a browser would.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use serde_json::Value;

use crate::helpers::{
    CLIENT, CLIENT_SECRET, PUBLIC_CLIENT, REDIRECT, TestApp, query_param, spawn_flow_app,
};

fn rp_http() -> openidconnect::reqwest::Client {
    openidconnect::reqwest::Client::builder()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn discover(app: &TestApp) -> CoreProviderMetadata {
    CoreProviderMetadata::discover_async(IssuerUrl::new(app.issuer.clone()).unwrap(), &rp_http())
        .await
        .expect("discovery")
}

/// Full flow with the `openidconnect` crate: PKCE, nonce, state, code exchange with its
/// complete ID-token verification (signature, iss, aud, exp, nonce, at_hash), UserInfo.
async fn openidconnect_flow(app: &TestApp, client_id: &str, secret: Option<&str>, post: bool) {
    let metadata = discover(app).await;
    let auth_type = if post {
        AuthType::RequestBody
    } else {
        AuthType::BasicAuth
    };
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client_id.to_string()),
        secret.map(|s| ClientSecret::new(s.to_string())),
    )
    .set_auth_type(auth_type)
    .set_redirect_uri(RedirectUrl::new(REDIRECT.to_string()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();

    let back = app.authorize(auth_url.as_str()).await;
    assert_eq!(back.as_str().split('?').next(), Some(REDIRECT));
    assert_eq!(
        query_param(&back, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    // RFC 9207: iss on every authorization response.
    assert_eq!(
        query_param(&back, "iss").as_deref(),
        Some(app.issuer.as_str())
    );
    let code = query_param(&back, "code").expect("code");

    let http = rp_http();
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("id_token");
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &nonce)
        .expect("ID token verifies");
    let at_hash = claims.access_token_hash().expect("at_hash");
    let expected = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(at_hash, &expected);
    assert_eq!(
        claims.preferred_username().map(|u| u.as_str()),
        Some("alice")
    );
    assert_eq!(
        claims.email().map(|e| e.as_str()),
        Some("alice@example.com")
    );
    assert_ne!(claims.subject().as_str(), "alice");

    let userinfo: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(userinfo.subject(), claims.subject());
    assert_eq!(
        userinfo.email().map(|e| e.as_str()),
        Some("alice@example.com")
    );
}

#[tokio::test]
async fn openidconnect_rp_confidential_client_with_basic_auth() {
    let app = spawn_flow_app().await;
    openidconnect_flow(&app, CLIENT, Some(CLIENT_SECRET), false).await;
}

#[tokio::test]
async fn openidconnect_rp_client_secret_post() {
    let app = spawn_flow_app().await;
    openidconnect_flow(&app, "poster", Some(CLIENT_SECRET), true).await;
}

#[tokio::test]
async fn openidconnect_rp_public_client_with_pkce() {
    let app = spawn_flow_app().await;
    openidconnect_flow(&app, PUBLIC_CLIENT, None, false).await;
}

fn decode_jwt_part(token: &str, part: usize) -> Value {
    use base64::Engine;
    let segment = token.split('.').nth(part).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The same flow by hand with `client_secret_post`, checking the token formats.
#[tokio::test]
async fn client_secret_post_and_token_formats() {
    let app = spawn_flow_app().await;
    let url = app.url(&format!(
        "/authorize?response_type=code&client_id=poster&redirect_uri={REDIRECT}&scope=openid%20roles&state=s1&nonce=n1"
    ));
    let back = app.authorize(&url).await;
    let code = query_param(&back, "code").unwrap();
    let response = app
        .token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("client_id", "poster"),
                ("client_secret", CLIENT_SECRET),
            ],
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].is_number());
    assert_eq!(body["scope"], "openid roles");

    let access = body["access_token"].as_str().unwrap();
    let header = decode_jwt_part(access, 0);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256");
    let at = decode_jwt_part(access, 1);
    for claim in [
        "iss",
        "sub",
        "aud",
        "client_id",
        "scope",
        "iat",
        "exp",
        "jti",
    ] {
        assert!(at.get(claim).is_some(), "access token lacks {claim}");
    }
    assert_eq!(at["client_id"], "poster");

    let id = decode_jwt_part(body["id_token"].as_str().unwrap(), 1);
    assert_eq!(id["aud"], "poster");
    assert_eq!(id["azp"], "poster");
    assert_eq!(id["nonce"], "n1");
    assert_eq!(id["roles"], serde_json::json!(["admin", "user"]));
    for claim in ["iss", "sub", "exp", "iat", "auth_time", "at_hash", "sid"] {
        assert!(id.get(claim).is_some(), "ID token lacks {claim}");
    }
    // Without the email scope, no e-mail claims.
    assert!(id.get("email").is_none());

    // UserInfo by POST with the token in the body.
    let info: Value = app
        .http
        .post(app.url("/userinfo"))
        .form(&[("access_token", access)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], id["sub"]);
    assert_eq!(info["roles"], serde_json::json!(["admin", "user"]));
}

/// A remembered consent is not asked again; a first-party client never asks; the
/// session means no second login.
#[tokio::test]
async fn consent_is_remembered_and_sessions_are_single_sign_on() {
    let app = spawn_flow_app().await;
    let url = app.url(&format!(
        "/authorize?response_type=code&client_id={CLIENT}&redirect_uri={REDIRECT}&scope=openid&state=a"
    ));
    let first = app.authorize(&url).await;
    assert!(query_param(&first, "code").is_some());
    // Second time: straight back to the client, no page in between.
    let again = app.http.get(&url).send().await.unwrap();
    assert_eq!(again.status(), 303);
    let location = again.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    // prompt=consent shows the page again.
    let url = format!("{url}&prompt=consent");
    let page = app.http.get(&url).send().await.unwrap();
    assert!(
        page.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/consent")
    );
    // A first-party client skips consent entirely.
    let fp = app.url(&format!(
        "/authorize?response_type=code&client_id=first&redirect_uri={REDIRECT}&scope=openid"
    ));
    let direct = app.http.get(&fp).send().await.unwrap();
    assert!(
        direct.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(REDIRECT)
    );
}

#[tokio::test]
async fn denying_consent_redirects_access_denied_with_state_and_iss() {
    let app = spawn_flow_app().await;
    let url = app.url(&format!(
        "/authorize?response_type=code&client_id={CLIENT}&redirect_uri={REDIRECT}&scope=openid&state=xyz"
    ));
    let back = app
        .authorize_as(&url, crate::helpers::USER, crate::helpers::PASSWORD, "deny")
        .await;
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(query_param(&back, "state").as_deref(), Some("xyz"));
    assert_eq!(
        query_param(&back, "iss").as_deref(),
        Some(app.issuer.as_str())
    );
}
