//! Refresh tokens (RFC 6749 §6, OIDC Core §12, RFC 9700 §4.14): issue at the code
//! exchange, rotation with a grace window, family revocation on reuse, scope narrowing,
//! bad input, and races — many requests at once, on one server and on two processes
//! sharing one database — plus racing redemptions of one authorization code.

use std::time::{Duration, Instant};

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use serde_json::Value;
use tokio::task::JoinSet;

use crate::helpers::jwt_claims;
use crate::helpers::{
    CLIENT, CLIENT_SECRET, Options, PUBLIC_CLIENT, REDIRECT, TestApp, USER, flow_options,
    query_param, spawn_app_with, spawn_flow_app,
};

const SCOPE: &str = "openid profile email";

/// `flow_options()` plus `extra` appended to its TOML.
fn options_with(extra: &str) -> Options {
    let mut options = flow_options();
    options.extra_toml.push_str(extra);
    options
}

/// A relying party's HTTP client: no cookies, no redirects.
fn rp_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Drives the browser through login and consent for `client_id` with scope
/// `openid profile email` and a nonce; returns the code.
async fn code_for(app: &TestApp, client_id: &str) -> String {
    let url = app.url(&format!(
        "/authorize?response_type=code&client_id={client_id}&redirect_uri={REDIRECT}\
         &scope=openid%20profile%20email&state=st&nonce=n-0S6"
    ));
    let back = app.authorize(&url).await;
    query_param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"))
}

/// Exchanges a code as `client_id` with Basic authentication.
async fn exchange_as(
    http: &reqwest::Client,
    base: &str,
    code: &str,
    client_id: &str,
    secret: &str,
) -> reqwest::Response {
    http.post(format!("{base}/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap()
}

/// The code flow for "rp": the token response of the code exchange.
async fn first_tokens(app: &TestApp) -> Value {
    let code = code_for(app, CLIENT).await;
    let response = exchange_as(&rp_http(), &app.address, &code, CLIENT, CLIENT_SECRET).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["refresh_token"].is_string(), "{body}");
    body
}

fn refresh_token_of(body: &Value) -> String {
    body["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token in {body}"))
        .to_string()
}

fn access_token_of(body: &Value) -> String {
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {body}"))
        .to_string()
}

/// `grant_type=refresh_token` at `base` as "rp" with Basic authentication.
async fn refresh_at(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    scope: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    http.post(format!("{base}/token"))
        .basic_auth(CLIENT, Some(CLIENT_SECRET))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// A refresh that must succeed; its JSON body.
async fn refresh_ok(app: &TestApp, token: &str, scope: Option<&str>) -> Value {
    let response = refresh_at(&rp_http(), &app.address, token, scope).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    body
}

/// A refresh that must fail: the status and the `error` code.
async fn refresh_error(app: &TestApp, token: &str, scope: Option<&str>) -> (u16, String) {
    let response = refresh_at(&rp_http(), &app.address, token, scope).await;
    let status = response.status().as_u16();
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

async fn userinfo_status(app: &TestApp, access_token: &str) -> u16 {
    rp_http()
        .get(app.url("/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn userinfo(app: &TestApp, access_token: &str) -> Value {
    let response = rp_http()
        .get(app.url("/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// RFC 7662 as "rp": whether the token is active. A rotated refresh token is not.
async fn active(app: &TestApp, token: &str) -> bool {
    let body: Value = rp_http()
        .post(app.url("/introspect"))
        .basic_auth(CLIENT, Some(CLIENT_SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["active"].as_bool().unwrap_or_else(|| panic!("{body}"))
}

fn is_opaque_token(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One answer of a concurrent batch: status and raw body.
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }
}

/// Sends `n` refreshes of `token` at once, request `i` to `bases[i % bases.len()]`.
async fn refresh_concurrently(bases: &[String], token: &str, n: usize) -> Vec<Answer> {
    let http = rp_http();
    let mut set = JoinSet::new();
    for i in 0..n {
        let http = http.clone();
        let base = bases[i % bases.len()].clone();
        let token = token.to_string();
        set.spawn(async move {
            let response = refresh_at(&http, &base, &token, None).await;
            let status = response.status().as_u16();
            Answer {
                status,
                body: response.text().await.unwrap(),
            }
        });
    }
    set.join_all().await
}

/// Every answer is 200 and all carry the same new refresh token, different from the
/// presented one; returns it.
fn one_successor(answers: &[Answer], presented: &str) -> String {
    for answer in answers {
        assert!(
            answer.status < 500,
            "{} from a concurrent refresh: {}",
            answer.status,
            answer.body
        );
    }
    let failed: Vec<String> = answers
        .iter()
        .filter(|a| a.status != 200)
        .map(|a| format!("{} {}", a.status, a.body))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} concurrent refreshes failed: {failed:?}",
        failed.len(),
        answers.len()
    );
    let tokens: Vec<String> = answers
        .iter()
        .map(|a| refresh_token_of(&a.json()))
        .collect();
    let first = tokens[0].clone();
    let forks = tokens.iter().filter(|t| **t != first).count();
    assert_eq!(forks, 0, "the family forked: {tokens:?}");
    assert_ne!(first, presented);
    assert!(is_opaque_token(&first), "{first}");
    first
}

#[tokio::test]
async fn the_code_exchange_returns_a_refresh_token_only_with_the_grant() {
    let app = spawn_app_with(options_with(&format!(
        r#"
[[clients]]
id = "norefresh"
secret = "{CLIENT_SECRET}"
redirect_uris = ["{REDIRECT}"]
grant_types = ["authorization_code"]
"#
    )))
    .await;

    let body = first_tokens(&app).await;
    let refresh = refresh_token_of(&body);
    assert!(
        is_opaque_token(&refresh),
        "not 43 URL-safe chars: {refresh}"
    );
    assert_eq!(body["scope"], SCOPE);
    assert!(active(&app, &refresh).await);

    let code = code_for(&app, "norefresh").await;
    let response = exchange_as(&rp_http(), &app.address, &code, "norefresh", CLIENT_SECRET).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["access_token"].is_string(), "{body}");
    assert!(body["id_token"].is_string(), "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");

    // And the grant itself is refused to that client (RFC 6749 §5.2).
    let response = rp_http()
        .post(app.url("/token"))
        .basic_auth("norefresh", Some(CLIENT_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized_client");
    assert!(active(&app, &refresh).await, "a refused request rotated");
}

/// OIDC Core §12.2 with a real relying-party library: the refreshed ID token keeps
/// `sub`, `aud`, `auth_time`, `sid`, and has no `nonce`.
#[tokio::test]
async fn openidconnect_rp_refresh_round_trip() {
    let app = spawn_flow_app().await;
    let http = openidconnect::reqwest::Client::builder()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(app.issuer.clone()).unwrap(), &http)
            .await
            .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(CLIENT.to_string()),
        Some(ClientSecret::new(CLIENT_SECRET.to_string())),
    )
    .set_auth_type(AuthType::BasicAuth)
    .set_redirect_uri(RedirectUrl::new(REDIRECT.to_string()).unwrap());
    let (auth_url, _csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .url();
    let back = app.authorize(auth_url.as_str()).await;
    let code = query_param(&back, "code").expect("code");
    let first = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .request_async(&http)
        .await
        .expect("code exchange");
    let verifier = client.id_token_verifier();
    let first_id = first.id_token().expect("id_token");
    let first_claims = first_id
        .claims(&verifier, &nonce)
        .expect("ID token verifies");
    let first_raw = jwt_claims(&first_id.to_string());
    assert_eq!(first_raw["nonce"], nonce.secret().as_str());
    let old_refresh = first.refresh_token().expect("refresh_token").clone();

    let refreshed = client
        .exchange_refresh_token(&old_refresh)
        .unwrap()
        .request_async(&http)
        .await
        .expect("refresh");
    let id_token = refreshed.id_token().expect("id_token on refresh");
    // OIDC Core §12.2: the refreshed ID token SHOULD NOT carry a nonce.
    let claims = id_token
        .claims(&verifier, |n: Option<&Nonce>| match n {
            None => Ok(()),
            Some(n) => Err(format!("unexpected nonce {}", n.secret())),
        })
        .expect("refreshed ID token verifies");
    assert_eq!(claims.subject(), first_claims.subject());
    assert_eq!(claims.audiences(), first_claims.audiences());
    assert_eq!(claims.auth_time(), first_claims.auth_time());
    assert!(claims.auth_time().is_some());
    let raw = jwt_claims(&id_token.to_string());
    assert!(raw.get("nonce").is_none(), "{raw}");
    assert!(first_raw["sid"].is_string(), "{first_raw}");
    assert_eq!(raw["sid"], first_raw["sid"]);
    assert_eq!(raw["azp"], CLIENT);

    let new_refresh = refreshed.refresh_token().expect("a rotated refresh token");
    assert_ne!(new_refresh.secret(), old_refresh.secret());
    assert!(is_opaque_token(new_refresh.secret()));

    let info: openidconnect::core::CoreUserInfoClaims = client
        .user_info(refreshed.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo with the refreshed access token");
    assert_eq!(info.subject(), claims.subject());
    assert_eq!(info.email().map(|e| e.as_str()), Some("alice@example.com"));

    // The new token works in turn.
    let again = client
        .exchange_refresh_token(&RefreshToken::new(new_refresh.secret().clone()))
        .unwrap()
        .request_async(&http)
        .await
        .expect("second refresh");
    assert_ne!(
        again.refresh_token().map(|t| t.secret()),
        Some(new_refresh.secret())
    );
}

/// RFC 9700 §4.14.2: rotation; within the grace window the old token gets the same
/// successor; after it, reuse revokes the family and its access tokens.
#[tokio::test]
async fn rotation_grace_window_and_family_revocation() {
    // Default grace (10 s): a second presentation right away is a success with the
    // identical successor and a working access token.
    let app = spawn_flow_app().await;
    let first = first_tokens(&app).await;
    let old = refresh_token_of(&first);
    let one = refresh_ok(&app, &old, None).await;
    let new = refresh_token_of(&one);
    assert_ne!(new, old);
    assert!(
        !active(&app, &old).await,
        "a rotated token is no longer active"
    );
    assert!(active(&app, &new).await);
    let two = refresh_ok(&app, &old, None).await;
    assert_eq!(refresh_token_of(&two), new, "the family forked");
    assert_eq!(userinfo_status(&app, &access_token_of(&two)).await, 200);
    assert_eq!(userinfo_status(&app, &access_token_of(&one)).await, 200);
    assert!(active(&app, &new).await);
    drop(app);

    // Grace of 1 s: reuse after it fails and ends the whole family.
    let app = spawn_app_with(options_with("\n[tokens]\nrefresh_grace_seconds = 1\n")).await;
    let first = first_tokens(&app).await;
    let old = refresh_token_of(&first);
    let one = refresh_ok(&app, &old, None).await;
    let new = refresh_token_of(&one);
    let code_access = access_token_of(&first);
    let refresh_access = access_token_of(&one);
    assert_eq!(userinfo_status(&app, &code_access).await, 200);
    assert_eq!(userinfo_status(&app, &refresh_access).await, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;

    assert_eq!(
        refresh_error(&app, &old, None).await,
        (400, "invalid_grant".into())
    );
    assert_eq!(
        refresh_error(&app, &new, None).await,
        (400, "invalid_grant".into()),
        "the successor outlived the family's revocation"
    );
    assert!(!active(&app, &new).await);
    assert_eq!(userinfo_status(&app, &code_access).await, 401);
    assert_eq!(userinfo_status(&app, &refresh_access).await, 401);
    // And stays dead: the old token again is still refused.
    assert_eq!(
        refresh_error(&app, &old, None).await,
        (400, "invalid_grant".into())
    );
}

/// RFC 6749 §6: the scope may be narrowed for one refresh, never widened.
#[tokio::test]
async fn scope_can_be_narrowed_but_not_widened() {
    let app = spawn_flow_app().await;
    let first = first_tokens(&app).await;
    let token = refresh_token_of(&first);

    // Widening: invalid_scope, and nothing rotated.
    assert_eq!(
        refresh_error(&app, &token, Some("openid profile email roles")).await,
        (400, "invalid_scope".into())
    );
    assert_eq!(
        refresh_error(&app, &token, Some("openid offline_access")).await,
        (400, "invalid_scope".into())
    );
    assert!(active(&app, &token).await, "a refused widening rotated");

    // Narrowing: the access token carries only what was asked.
    let narrow = refresh_ok(&app, &token, Some("openid")).await;
    assert_eq!(narrow["scope"], "openid");
    let access = access_token_of(&narrow);
    assert_eq!(jwt_claims(&access)["scope"], "openid");
    let info = userinfo(&app, &access).await;
    assert!(info.get("email").is_none(), "{info}");
    assert!(info.get("preferred_username").is_none(), "{info}");
    let id = jwt_claims(narrow["id_token"].as_str().unwrap());
    assert!(id.get("email").is_none(), "{id}");

    // The next refresh without scope gets the original grant back.
    let next = refresh_token_of(&narrow);
    let full = refresh_ok(&app, &next, None).await;
    assert_eq!(full["scope"], SCOPE);
    let access = access_token_of(&full);
    assert_eq!(jwt_claims(&access)["scope"], SCOPE);
    let info = userinfo(&app, &access).await;
    assert_eq!(info["email"], "alice@example.com");

    // Narrowing does not shrink the grant: widening back to the original is fine.
    let token = refresh_token_of(&full);
    let back = refresh_ok(&app, &token, Some("email openid")).await;
    assert!(
        back["scope"] == "email openid" || back["scope"] == "openid email",
        "{back}"
    );
}

/// Wrong client, disabled user and malformed requests: standard errors, no 5xx, and
/// the token is untouched.
#[tokio::test]
async fn refused_refreshes_change_nothing() {
    let app = spawn_flow_app().await;
    let first = first_tokens(&app).await;
    let token = refresh_token_of(&first);
    let access = access_token_of(&first);
    let huge = "A".repeat(10 * 1024);
    let long = "A".repeat(65);
    let suffixed = format!("{token}x");

    // Another client presents rp's token.
    let response = rp_http()
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token.as_str()),
            ("client_id", "poster"),
            ("client_secret", CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "another client");
    let response = rp_http()
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token.as_str()),
            ("client_id", PUBLIC_CLIENT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "a public client");
    assert!(
        active(&app, &token).await,
        "another client's attempt rotated"
    );

    let cases = [
        (
            "garbage",
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", "garbage"),
            ],
            Some((CLIENT, CLIENT_SECRET)),
            400,
            "invalid_grant",
        ),
        (
            "empty token",
            vec![("grant_type", "refresh_token"), ("refresh_token", "")],
            Some((CLIENT, CLIENT_SECRET)),
            400,
            "invalid_request",
        ),
        (
            "missing token",
            vec![("grant_type", "refresh_token")],
            Some((CLIENT, CLIENT_SECRET)),
            400,
            "invalid_request",
        ),
        (
            "10 KB token",
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", huge.as_str()),
            ],
            Some((CLIENT, CLIENT_SECRET)),
            400,
            "invalid_request",
        ),
        (
            "65 chars",
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", long.as_str()),
            ],
            Some((CLIENT, CLIENT_SECRET)),
            400,
            "invalid_grant",
        ),
        (
            "access token as refresh token",
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", access.as_str()),
            ],
            Some((CLIENT, CLIENT_SECRET)),
            400,
            "invalid_grant",
        ),
        (
            "NUL and non-ASCII",
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", "a\0b\u{e9}\u{1F600}"),
            ],
            Some((CLIENT, CLIENT_SECRET)),
            400,
            "invalid_grant",
        ),
        (
            "the token with a suffix",
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", suffixed.as_str()),
            ],
            Some((CLIENT, CLIENT_SECRET)),
            400,
            "invalid_grant",
        ),
        (
            "repeated refresh_token",
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
                ("refresh_token", token.as_str()),
            ],
            Some((CLIENT, CLIENT_SECRET)),
            400,
            "invalid_request",
        ),
        (
            "wrong secret",
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
            ],
            Some((CLIENT, "not-the-secret-not-the-secret-not-the-secret")),
            401,
            "invalid_client",
        ),
        (
            "no client authentication",
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
            ],
            None,
            401,
            "invalid_client",
        ),
    ];
    for (case, form, basic, status, error) in cases {
        let response = app.token(&form, basic).await;
        let got = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{case}: {body}"
        );
        assert!(active(&app, &token).await, "{case} changed the token");
    }
    // Still rp's own, still good.
    let rotated = refresh_ok(&app, &token, None).await;
    let token = refresh_token_of(&rotated);
    assert_eq!(userinfo_status(&app, &access_token_of(&rotated)).await, 200);

    // A disabled user's token is refused (and a fresh one is not handed out).
    let out = app.cli(&["user", "disable", USER]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(
        refresh_error(&app, &token, None).await,
        (400, "invalid_grant".into())
    );
    assert_eq!(
        refresh_error(&app, &token, None).await,
        (400, "invalid_grant".into())
    );
}

/// 50 refreshes of one token at once on one server: all succeed with one successor.
#[tokio::test]
async fn concurrent_refreshes_of_one_token_all_get_the_same_successor() {
    let app = spawn_app_with(options_with("\n[tokens]\nrefresh_grace_seconds = 2\n")).await;
    let first = first_tokens(&app).await;
    let old = refresh_token_of(&first);

    let answers = refresh_concurrently(std::slice::from_ref(&app.address), &old, 50).await;
    let new = one_successor(&answers, &old);
    for answer in answers.iter().step_by(7) {
        let access = access_token_of(&answer.json());
        assert_eq!(userinfo_status(&app, &access).await, 200);
    }

    // The successor works...
    let next = refresh_ok(&app, &new, None).await;
    assert_ne!(refresh_token_of(&next), new);
    // ...and once the window has passed, the old token does not.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        refresh_error(&app, &old, None).await,
        (400, "invalid_grant".into())
    );
}

/// A second oxidp process (the real binary) on the same database; killed on drop.
struct SecondServer {
    child: std::process::Child,
    address: String,
}

impl Drop for SecondServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_second_server(app: &TestApp) -> SecondServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let config = app.config_toml.replace(
        &format!("bind = \"127.0.0.1:{}\"", app.port),
        &format!("bind = \"127.0.0.1:{port}\""),
    );
    assert_ne!(config, app.config_toml, "bind not rewritten");
    let path = app.dir.path().join("second.toml");
    std::fs::write(&path, config).unwrap();
    let log = std::fs::File::create(app.dir.path().join("second.log")).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_oxidp"));
    for (k, _) in std::env::vars() {
        if k.starts_with("OXIDP_") {
            command.env_remove(k);
        }
    }
    let child = command
        .arg("--config")
        .arg(&path)
        .arg("serve")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut second = SecondServer {
        child,
        address: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("{}/healthz", second.address)).await
            && r.status() == 200
        {
            return second;
        }
        if let Some(exit) = second.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(app.dir.path().join("second.log"));
            panic!("the second server exited with {exit:?}: {log:?}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the second server did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two oxidp processes sharing one database (SQLite file, or PostgreSQL with
/// TEST_DATABASE_URL): 50 refreshes of one token, alternating between them.
#[tokio::test]
async fn concurrent_refreshes_across_two_processes_sharing_one_database() {
    let app = spawn_app_with(options_with("\n[tokens]\nrefresh_grace_seconds = 5\n")).await;
    let second = start_second_server(&app).await;
    let first = first_tokens(&app).await;
    let old = refresh_token_of(&first);

    let bases = [app.address.clone(), second.address.clone()];
    let answers = refresh_concurrently(&bases, &old, 50).await;
    let new = one_successor(&answers, &old);

    // Access tokens from either process work at the other.
    for (i, answer) in answers.iter().enumerate().take(4) {
        let access = access_token_of(&answer.json());
        let base = &bases[(i + 1) % 2];
        let status = rp_http()
            .get(format!("{base}/userinfo"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "answer {i} at {base}");
    }
    // The successor works at the second process.
    let response = refresh_at(&rp_http(), &second.address, &new, None).await;
    assert_eq!(response.status(), 200);
    drop(second);
}

/// RFC 6749 §4.1.2: of 20 redemptions of one code at once exactly one succeeds, and
/// since the code was replayed, what it issued is revoked.
#[tokio::test]
async fn concurrent_redemptions_of_one_code_issue_once_and_revoke() {
    let app = spawn_flow_app().await;
    let code = code_for(&app, CLIENT).await;
    let http = rp_http();
    let mut set = JoinSet::new();
    for _ in 0..20 {
        let http = http.clone();
        let base = app.address.clone();
        let code = code.clone();
        set.spawn(async move {
            let response = exchange_as(&http, &base, &code, CLIENT, CLIENT_SECRET).await;
            let status = response.status().as_u16();
            Answer {
                status,
                body: response.text().await.unwrap(),
            }
        });
    }
    let answers = set.join_all().await;
    let winners: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(
        winners.len(),
        1,
        "{:?}",
        answers
            .iter()
            .map(|a| (a.status, &a.body))
            .collect::<Vec<_>>()
    );
    for answer in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert_eq!(answer.json()["error"], "invalid_grant", "{}", answer.body);
    }
    let body = winners[0].json();
    assert_eq!(
        userinfo_status(&app, &access_token_of(&body)).await,
        401,
        "the access token of a replayed code still works"
    );
    // The refresh token issued with it is revoked too (DESIGN.md: a replayed code
    // revokes the access and refresh tokens issued from it), even when the replay revokes
    // before the winner inserts its refresh token (regression, see
    // concurrent_replays_of_a_code_revoke_its_refresh_token).
    let refresh = refresh_token_of(&body);
    assert!(
        !active(&app, &refresh).await,
        "refresh token of a replayed code is active"
    );
    assert_eq!(
        refresh_error(&app, &refresh, None).await,
        (400, "invalid_grant".into()),
        "the refresh token of a replayed code still works"
    );
}

/// Two redemptions of one code at once, many times over: whichever loses must still
/// revoke what the winner was issued — the refresh token as well as the access token.
#[tokio::test]
async fn concurrent_replays_of_a_code_revoke_its_refresh_token() {
    let app = spawn_flow_app().await;
    let http = rp_http();
    let mut leaked = Vec::new();
    for round in 0..30 {
        let code = code_for(&app, CLIENT).await;
        let (a, b) = tokio::join!(
            exchange_as(&http, &app.address, &code, CLIENT, CLIENT_SECRET),
            exchange_as(&http, &app.address, &code, CLIENT, CLIENT_SECRET),
        );
        let a = (a.status().as_u16(), a.text().await.unwrap());
        let b = (b.status().as_u16(), b.text().await.unwrap());
        let (winner, loser) = match (a.0, b.0) {
            (200, 400) => (a.1, b.1),
            (400, 200) => (b.1, a.1),
            _ => panic!("round {round}: {a:?} {b:?}"),
        };
        let loser: Value = serde_json::from_str(&loser).unwrap();
        assert_eq!(loser["error"], "invalid_grant");
        let body: Value = serde_json::from_str(&winner).unwrap();
        assert_eq!(
            userinfo_status(&app, &access_token_of(&body)).await,
            401,
            "round {round}: the access token of a replayed code works"
        );
        let refresh = refresh_token_of(&body);
        let (status, _) = refresh_error_or_ok(&app, &refresh).await;
        if status == 200 {
            leaked.push(round);
        }
    }
    // Regression: when the replay's revoke_family runs between the winner's redeem_code
    // and its issue_refresh, the refresh token is inserted after the family was revoked;
    // the family's `revocations` row must still stop it.
    assert!(
        leaked.is_empty(),
        "the refresh token of a replayed code still works (rounds {leaked:?} of 30)"
    );
}

/// `/revoke` and a refresh of the same token at once, many times over: whichever runs
/// first, no usable refresh token may be left in the family (RFC 7009 §2.1).
#[tokio::test]
async fn concurrent_revocation_and_refresh_leave_no_live_successor() {
    let app = spawn_flow_app().await;
    let http = rp_http();
    let mut leaked = Vec::new();
    for round in 0..30 {
        let token = refresh_token_of(&first_tokens(&app).await);
        let revoke = http
            .post(app.url("/revoke"))
            .basic_auth(CLIENT, Some(CLIENT_SECRET))
            .form(&[("token", token.as_str())])
            .send();
        let (refreshed, revoked) =
            tokio::join!(refresh_at(&http, &app.address, &token, None), revoke);
        assert_eq!(revoked.unwrap().status(), 200, "round {round}");
        let status = refreshed.status().as_u16();
        let body: Value = refreshed.json().await.unwrap();
        assert!(
            status == 200 || (status == 400 && body["error"] == "invalid_grant"),
            "round {round}: {status} {body}"
        );
        assert_eq!(
            refresh_error(&app, &token, None).await,
            (400, "invalid_grant".into()),
            "round {round}: the revoked token still works"
        );
        if status == 200 {
            assert_eq!(
                userinfo_status(&app, &access_token_of(&body)).await,
                401,
                "round {round}"
            );
            let (status, _) = refresh_error_or_ok(&app, &refresh_token_of(&body)).await;
            if status == 200 {
                leaked.push(round);
            }
        }
    }
    // Regression (PostgreSQL): revoke_family's UPDATE waits on the row lock of the
    // rotating transaction and then re-checks only that row; the successor that
    // transaction inserted is not in the UPDATE's snapshot. The family's `revocations`
    // row must still stop it.
    assert!(
        leaked.is_empty(),
        "a successor outlived the revocation of its family (rounds {leaked:?} of 30)"
    );
}

/// A refresh whose outcome is only recorded: the status and the `error` code (empty on
/// success).
async fn refresh_error_or_ok(app: &TestApp, token: &str) -> (u16, String) {
    let response = refresh_at(&rp_http(), &app.address, token, None).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert!(
        status == 200 || (status == 400 && body["error"] == "invalid_grant"),
        "{status} {body}"
    );
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}
